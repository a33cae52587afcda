//! The OpenAPI 3 document of the admin API, served at `/api/openapi.json`, with Swagger UI (bundled
//! into the binary, nothing fetched) at `/api/docs/`.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::routes::{audit, budget, files, fleet, health, images, instances, ssh};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "dataroom-operator admin API",
        description = "Imperative operations on the instances the operator manages. Every route needs \
                       `Authorization: Bearer <admin key>`; errors are RFC 7807 problems with a stable `code`."
    ),
    paths(
        instances::list, instances::create, instances::get_one, instances::start, instances::stop,
        instances::remove, health::health, ssh::exec, ssh::exec_batch, files::download, files::upload,
        files::push_files, files::push_config, images::list_amis,
        images::create_ami, images::get_ami, images::list_keypairs, images::create_keypair, images::delete_keypair,
        budget::get_budget, budget::put_budget, audit::list,
        audit::verify, fleet::list_rooms, fleet::get_room, fleet::start_room, fleet::stop_room,
    ),
    modifiers(&BearerKey),
    tags(
        (name = "instances", description = "Ec2Instance lifecycle (the controller does the EC2 work)"),
        (name = "ssh", description = "Commands on instances over SSH (host keys pinned on first use)"),
        (name = "files", description = "Files and configuration over SFTP; every write is whole or absent"),
        (name = "images", description = "AMIs and key pairs (private keys stay in Secrets Manager)"),
        (name = "governance", description = "Budget and audit log"),
        (name = "fleet", description = "DataRooms: phase, spend today, start and stop (the controller does the work)"),
    )
)]
pub struct ApiDoc;

struct BearerKey;

impl Modify for BearerKey {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let scheme =
            HttpBuilder::new().scheme(HttpAuthScheme::Bearer).description(Some("an admin key")).build();
        components.add_security_scheme("admin_key", SecurityScheme::Http(scheme));
    }
}

/// The document as JSON (also `dataroom-operator openapi`).
pub fn document() -> String {
    ApiDoc::openapi().to_pretty_json().expect("the document serialises")
}
