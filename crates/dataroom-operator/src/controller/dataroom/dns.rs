//! A room in DNS: published under its name while it is Ready and owns the name, removed once it
//! stops, fails or is deleted (also when that happened while the operator was down: the first
//! reconcile after a start makes the zone right whatever this process remembers). Each change is
//! audited; a failed change leaves the room's phase alone and is retried at the next reconcile.

use std::net::Ipv4Addr;

use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::plan::Phase;
use super::status::{DnsReport, Report};
use super::{Memory, key};
use crate::audit::{Entry, Outcome};
use crate::controller::{ACTOR, Context, Result};
use crate::crd::{DataRoom, DataRoomState, audit_target};
use crate::dns::{self, Change, Claim, Record};

/// The rooms that ask for a name now: those that should run and are not being deleted.
fn claims(ctx: &Context, zone: &str) -> Vec<Claim> {
    let rooms = ctx.rooms.state();
    let wanting = rooms
        .iter()
        .filter(|r| r.spec.state == DataRoomState::Running && r.meta().deletion_timestamp.is_none());
    wanting
        .map(|r| Claim {
            room: key(r),
            name: name(r, zone),
            since: r.meta().creation_timestamp.as_ref().map(|t| t.0.to_string()).unwrap_or_default(),
        })
        .collect()
}

fn name(room: &DataRoom, zone: &str) -> String {
    let hostname = room.spec.dns.as_ref().and_then(|d| d.hostname.as_deref());
    dns::room_name(&room.name_any(), &room.namespace().unwrap_or_default(), hostname, zone)
}

/// Brings the zone to what the room's phase says, and tells status what it holds.
pub async fn settle(
    room: &DataRoom,
    ctx: &Context,
    deleting: bool,
    memory: &mut Memory,
    report: &mut Report,
) -> Result<()> {
    let Some(zone) = ctx.dns.clone() else { return Ok(()) };
    let name = name(room, zone.zone());
    let claims = claims(ctx, zone.zone());
    let taken_by = dns::owner(&name, &claims).filter(|owner| *owner != key(room)).map(str::to_string);
    let address = report.endpoint.as_deref().and_then(|e| e.split(':').next()?.parse::<Ipv4Addr>().ok());
    let ready = report.phase == Phase::Ready && !deleting;
    let wanted = address.filter(|_| ready);
    if taken_by.is_some() && matches!(&memory.dns, Some(Record::At(n, _)) if *n == name) {
        // The record is now the owner's to write: what this room made is no longer known to be
        // there, so that it is made again should this room become the owner.
        memory.dns = None;
    }
    let mut failed = None;
    for change in dns::changes(&name, taken_by.is_none(), wanted, memory.dns.as_ref()) {
        let (action, reason, params, made) = match &change {
            Change::Publish(name, address) => {
                let made = zone.publish(name, *address).await;
                ("dns.publish", "DnsPublished", json!({ "name": name, "address": address.to_string() }), made)
            }
            Change::Unpublish(name) => {
                ("dns.unpublish", "DnsRemoved", json!({ "name": name }), zone.unpublish(name).await)
            }
        };
        let entry = Entry::new(ACTOR, action, &audit_target(room), Outcome::Success).params(params);
        match made {
            Ok(()) => {
                memory.dns = Some(match change {
                    Change::Publish(name, address) => Record::At(name, address),
                    Change::Unpublish(name) => Record::Absent(name),
                });
                ctx.record(room, entry, Some((EventType::Normal, reason))).await?;
            }
            Err(e) => {
                let entry = Entry { outcome: Outcome::Failure, ..entry }.detail(e.to_string());
                ctx.record(room, entry, Some((EventType::Warning, "DnsFailed"))).await?;
                failed = Some(e.to_string());
                break;
            }
        }
    }
    let published = matches!(&memory.dns, Some(Record::At(n, _)) if *n == name);
    report.dns = Some(match (taken_by, failed) {
        (Some(owner), _) => DnsReport::refused(format!(
            "the name {name} belongs to the room {owner}, which asked for it first"
        )),
        (None, Some(why)) => DnsReport::failed(why),
        (None, None) if published => DnsReport::published(name, wanted),
        (None, None) => DnsReport::unpublished(name),
    });
    Ok(())
}
