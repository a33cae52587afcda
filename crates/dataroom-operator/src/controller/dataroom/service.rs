//! A Ready room in the cluster's own DNS: a Service named as the room, without a selector, and an
//! EndpointSlice that points it at the room's instance, so that in-cluster clients reach
//! `<name>.<namespace>.svc` on the health port. Both are owned by the room (garbage-collected with
//! it) and removed when it stops or fails. Written with server-side apply, never forced: a Service
//! of that name that someone else made is left alone, and the room's events say so.

use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::Memory;
use super::plan::Phase;
use super::status::Report;
use crate::audit::{Entry, Outcome};
use crate::controller::{ACTOR, Context, Error, Result};
use crate::crd::{DataRoom, MANAGER, audit_target};

fn slice_name(room: &DataRoom) -> String {
    format!("{}-instance", room.name_any())
}

/// Makes the room's Service and EndpointSlice match its phase and address.
pub async fn settle(
    room: &DataRoom,
    ctx: &Context,
    deleting: bool,
    memory: &mut Memory,
    report: &Report,
) -> Result<()> {
    if !ctx.settings.room_services {
        return Ok(());
    }
    let address = report.endpoint.as_deref().and_then(|e| e.split(':').next()?.parse::<Ipv4Addr>().ok());
    let wanted = address.filter(|_| report.phase == Phase::Ready && !deleting);
    if memory.service_published == Some(wanted) {
        return Ok(());
    }
    let made = match wanted {
        Some(address) => publish(room, ctx, address).await,
        None => unpublish(room, ctx).await,
    };
    let (action, params) = match wanted {
        Some(address) => {
            ("service.publish", json!({ "service": room.name_any(), "address": address.to_string() }))
        }
        None => ("service.unpublish", json!({ "service": room.name_any() })),
    };
    let entry = Entry::new(ACTOR, action, &audit_target(room), Outcome::Success).params(params);
    match made {
        Ok(()) => {
            memory.service_published = Some(wanted);
            ctx.append(entry).await?;
            Ok(())
        }
        Err(e) => {
            let entry = Entry { outcome: Outcome::Failure, ..entry }.detail(e.to_string());
            ctx.record(room, entry, Some((EventType::Warning, "ServiceFailed"))).await?;
            Ok(())
        }
    }
}

async fn publish(room: &DataRoom, ctx: &Context, address: Ipv4Addr) -> Result<()> {
    let namespace = room.namespace().unwrap_or_default();
    let owner = room.controller_owner_ref(&()).ok_or(Error::MissingField("metadata.uid"))?;
    let port = room.spec.health_check.port;
    let labels =
        json!({ "app.kubernetes.io/managed-by": MANAGER, "dataroom.dev/data-room": room.name_any() });
    let service = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": { "name": room.name_any(), "namespace": namespace, "labels": labels, "ownerReferences": [owner] },
        "spec": { "ports": [{ "name": "health", "port": port, "protocol": "TCP", "targetPort": port }] },
    });
    let mut slice_labels = labels.clone();
    slice_labels["kubernetes.io/service-name"] = json!(room.name_any());
    slice_labels["endpointslice.kubernetes.io/managed-by"] = json!(MANAGER);
    let slice = json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": { "name": slice_name(room), "namespace": namespace, "labels": slice_labels, "ownerReferences": [owner] },
        "addressType": "IPv4",
        "endpoints": [{ "addresses": [address.to_string()], "conditions": { "ready": true } }],
        "ports": [{ "name": "health", "port": port, "protocol": "TCP" }],
    });
    let params = PatchParams::apply(MANAGER);
    let services: Api<Service> = Api::namespaced(ctx.client.clone(), &namespace);
    services.patch(&room.name_any(), &params, &Patch::Apply(&service)).await?;
    let slices: Api<EndpointSlice> = Api::namespaced(ctx.client.clone(), &namespace);
    slices.patch(&slice_name(room), &params, &Patch::Apply(&slice)).await?;
    Ok(())
}

/// Removes the EndpointSlice and the Service, if they are the room's (a missing one is fine).
async fn unpublish(room: &DataRoom, ctx: &Context) -> Result<()> {
    let namespace = room.namespace().unwrap_or_default();
    let uid = room.uid();
    let ours = |owners: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference]| {
        owners.iter().any(|o| Some(&o.uid) == uid.as_ref())
    };
    let slices: Api<EndpointSlice> = Api::namespaced(ctx.client.clone(), &namespace);
    if let Some(slice) = slices.get_opt(&slice_name(room)).await?
        && ours(slice.owner_references())
    {
        slices.delete(&slice_name(room), &DeleteParams::default()).await?;
    }
    let services: Api<Service> = Api::namespaced(ctx.client.clone(), &namespace);
    if let Some(service) = services.get_opt(&room.name_any()).await?
        && ours(service.owner_references())
    {
        services.delete(&room.name_any(), &DeleteParams::default()).await?;
    }
    Ok(())
}
