//! The zone as ExternalDNS sees it: one `DNSEndpoint` (externaldns.k8s.io/v1alpha1) per
//! published name, in the operator's namespace, which ExternalDNS (run with
//! `--source=crd`) turns into records at whatever provider it is configured for. Written with
//! server-side apply; removing a name deletes its object.

use std::net::Ipv4Addr;

use async_trait::async_trait;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams};
use serde_json::json;

use super::Publisher;
use crate::cloud::{CloudError, ErrorKind};
use crate::crd::MANAGER;

/// How long resolvers may keep a room's address: short, as a stopped room's name must go soon.
const TTL_SECONDS: u32 = 30;

pub struct ExternalDns {
    client: kube::Client,
    namespace: String,
    zone: String,
}

impl ExternalDns {
    pub fn new(client: kube::Client, namespace: &str, zone: &str) -> Self {
        Self { client, namespace: namespace.into(), zone: zone.into() }
    }

    fn api(&self) -> Api<DynamicObject> {
        let gvk = GroupVersionKind::gvk("externaldns.k8s.io", "v1alpha1", "DNSEndpoint");
        Api::namespaced_with(self.client.clone(), &self.namespace, &ApiResource::from_gvk(&gvk))
    }
}

fn failed(e: kube::Error) -> CloudError {
    let kind = match &e {
        kube::Error::Api(s) if s.code == 404 => ErrorKind::NotFound,
        kube::Error::Api(s) if s.code < 500 && s.code != 409 && s.code != 429 => ErrorKind::Terminal,
        _ => ErrorKind::Retryable,
    };
    CloudError::new(kind, "DNSEndpoint", e.to_string())
}

#[async_trait]
impl Publisher for ExternalDns {
    fn zone(&self) -> &str {
        &self.zone
    }

    async fn publish(&self, name: &str, address: Ipv4Addr) -> Result<(), CloudError> {
        // A DNS name is a valid object name (lower case, dots, at most 253 characters).
        let object = json!({
            "apiVersion": "externaldns.k8s.io/v1alpha1", "kind": "DNSEndpoint",
            "metadata": { "name": name, "labels": { "app.kubernetes.io/managed-by": MANAGER } },
            "spec": { "endpoints": [{
                "dnsName": name, "recordType": "A", "recordTTL": TTL_SECONDS, "targets": [address.to_string()],
            }] },
        });
        let params = PatchParams::apply(MANAGER).force();
        self.api().patch(name, &params, &Patch::Apply(&object)).await.map(drop).map_err(failed)
    }

    async fn unpublish(&self, name: &str) -> Result<(), CloudError> {
        match self.api().delete(name, &DeleteParams::default()).await.map_err(failed) {
            Err(e) if !e.is_not_found() => Err(e),
            _ => Ok(()),
        }
    }
}
