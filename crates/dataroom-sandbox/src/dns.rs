//! The simulated Route53 zone: the operator publishes Ready rooms in it, and Hickory DNS's
//! authoritative server answers real DNS queries for it on the loopback (UDP and TCP), so that
//! `dig @127.0.0.1 -p PORT investor-x.default.rooms.dataroom.test` finds a Ready room and gets
//! NXDOMAIN once it stops.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use dataroom_operator::cloud::{CloudError, ErrorKind};
use dataroom_operator::dns::Publisher;
use hickory_server::Server;
use hickory_server::proto::rr::rdata::{A, SOA};
use hickory_server::proto::rr::{LowerName, Name, RData, Record, RecordType, RrKey};
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, Catalog, ZoneHandler, ZoneType};

/// The zone rooms are published in.
pub const ZONE: &str = "rooms.dataroom.test";
/// Short, so that a resolver that caches does not keep a stopped room's address for long.
const TTL: u32 = 5;

pub struct SandboxZone {
    handler: Arc<InMemoryZoneHandler>,
    serial: AtomicU32,
}

fn name(text: &str) -> Result<Name, CloudError> {
    Name::from_ascii(format!("{text}.")).map_err(|e| {
        CloudError::new(ErrorKind::Terminal, "InvalidChangeBatch", format!("{text} is not a DNS name: {e}"))
    })
}

impl SandboxZone {
    pub fn new() -> Arc<Self> {
        let origin = name(ZONE).expect("the zone is a DNS name");
        let mut handler = InMemoryZoneHandler::empty(origin.clone(), ZoneType::Primary, AxfrPolicy::Deny);
        let soa = SOA::new(
            name(&format!("ns.{ZONE}")).expect("a DNS name"),
            name(&format!("hostmaster.{ZONE}")).expect("a DNS name"),
            1,
            60,
            60,
            600,
            TTL,
        );
        handler.upsert_mut(Record::from_rdata(origin, 3600, RData::SOA(soa)), 1);
        Arc::new(Self { handler: Arc::new(handler), serial: AtomicU32::new(1) })
    }

    /// Answers queries for the zone on `addr` (UDP, and TCP on the same port); returns the
    /// bound address. The server runs until the task is aborted.
    pub async fn serve(
        &self,
        addr: SocketAddr,
    ) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
        let mut catalog = Catalog::new();
        let handler: Arc<dyn ZoneHandler> = self.handler.clone();
        catalog.upsert(LowerName::new(&name(ZONE).expect("a DNS name")), vec![handler]);
        let udp = tokio::net::UdpSocket::bind(addr).await?;
        let bound = udp.local_addr()?;
        let tcp = tokio::net::TcpListener::bind(bound).await?;
        let mut server = Server::new(catalog);
        server.register_socket(udp);
        server.register_listener(tcp, Duration::from_secs(5), 4096);
        let task = tokio::spawn(async move {
            if let Err(e) = server.block_until_done().await {
                tracing::warn!(error = %e, "the sandbox's DNS server stopped");
            }
        });
        Ok((bound, task))
    }
}

#[async_trait]
impl Publisher for SandboxZone {
    fn zone(&self) -> &str {
        ZONE
    }

    async fn publish(&self, fqdn: &str, address: Ipv4Addr) -> Result<(), CloudError> {
        let owner = name(fqdn)?;
        let serial = self.serial.fetch_add(1, Ordering::SeqCst) + 1;
        // One address per name: the old one goes first (an upsert would add a second A record).
        self.handler.records_mut().await.remove(&RrKey::new(LowerName::new(&owner), RecordType::A));
        self.handler.upsert(Record::from_rdata(owner, TTL, RData::A(A(address))), serial).await;
        Ok(())
    }

    async fn unpublish(&self, fqdn: &str) -> Result<(), CloudError> {
        let owner = name(fqdn)?;
        self.handler.records_mut().await.remove(&RrKey::new(LowerName::new(&owner), RecordType::A));
        Ok(())
    }
}
