//! The OpenAPI 3 document of the admin API, served at `/api/openapi.json`, with Swagger UI (bundled
//! into the binary, nothing fetched) at `/api/docs/`.

use std::sync::LazyLock;

use utoipa::openapi::content::{Content, ContentBuilder};
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Ref, RefOr};
use utoipa::{Modify, OpenApi};

use super::routes::{audit, budget, exec_stream, files, fleet, health, images, instances, ssh};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "dataroom-operator admin API",
        description = "Imperative operations on the instances the operator manages. Every route needs \
                       `Authorization: Bearer <admin key>` (keys begin with `drk_`) or a Kubernetes bearer \
                       token, which RBAC governs: each scope named below is asked of SubjectAccessReview as \
                       a verb on a resource of dataroom.dev (`read`: get ec2instances; `exec`: create \
                       ec2instances/exec; `budget`: update ec2budgets; see the README). Errors are RFC 7807 \
                       problems with a stable `code`."
    ),
    paths(
        instances::list, instances::create, instances::get_one, instances::start, instances::stop,
        instances::remove, health::health, ssh::exec, ssh::exec_batch, exec_stream::exec_stream,
        files::download, files::upload,
        files::push_files, files::push_config, images::list_amis,
        images::create_ami, images::get_ami, images::list_keypairs, images::create_keypair, images::delete_keypair,
        budget::get_budget, budget::put_budget, audit::list,
        audit::verify, fleet::list_rooms, fleet::get_room, fleet::start_room, fleet::stop_room,
    ),
    modifiers(&BearerKey, &Problems),
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
        let scheme = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .description(Some("an admin key, or a Kubernetes token (TokenReview, then SubjectAccessReview)"))
            .build();
        components.add_security_scheme("admin_key", SecurityScheme::Http(scheme));
    }
}

/// Errors are RFC 7807 problems, served as `application/problem+json`; every route that takes a
/// body may refuse it as too large (413) or not of its content type (415), and every route may
/// refuse a key without the scope it names (403 `insufficient_scope`).
struct Problems;

impl Modify for Problems {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let refusals = [
            ("413", "the body is larger than allowed"),
            ("415", "the body's content type is not the documented one"),
        ];
        for item in openapi.paths.paths.values_mut() {
            for op in [&mut item.get, &mut item.put, &mut item.post, &mut item.delete].into_iter().flatten() {
                let responses = &mut op.responses.responses;
                let scoped = "`insufficient_scope`: the key lacks the scope this operation names, or RBAC does \
                              not grant the Kubernetes identity its verb";
                responses.entry("403".into()).or_insert_with(|| RefOr::T(problem(scoped)));
                let limited =
                    "`rate_limited`: too many requests from this address or with this key (`Retry-After`)";
                let unavailable = "`identity_unavailable`: the Kubernetes API did not answer a token or \
                                   access review (`Retry-After`)";
                responses.entry("503".into()).or_insert_with(|| RefOr::T(problem(unavailable)));
                responses.entry("429".into()).or_insert_with(|| RefOr::T(problem(limited)));
                if op.request_body.is_some() {
                    for (code, why) in refusals {
                        responses.entry(code.into()).or_insert_with(|| RefOr::T(problem(why)));
                    }
                }
                for response in responses.values_mut() {
                    let RefOr::T(response) = response else { continue };
                    if response.content.get("application/json").is_some_and(is_problem) {
                        let content = response.content.shift_remove("application/json").expect("just seen");
                        response.content.insert(PROBLEM_JSON.into(), content);
                    }
                }
            }
        }
    }
}

const PROBLEM_JSON: &str = "application/problem+json";

fn problem(description: &str) -> Response {
    let content = ContentBuilder::new().schema(Some(Ref::from_schema_name("Problem"))).build();
    ResponseBuilder::new().description(description).content(PROBLEM_JSON, content).build()
}

fn is_problem(content: &RefOr<Content>) -> bool {
    matches!(content, RefOr::T(Content { schema: Some(RefOr::Ref(r)), .. }) if r.ref_location.ends_with("/Problem"))
}

/// The methods the documented route matching `path` serves (`GET, POST`), if one matches.
pub fn methods(path: &str) -> Option<String> {
    static ROUTES: LazyLock<Vec<(Vec<String>, String)>> = LazyLock::new(|| {
        let doc = ApiDoc::openapi();
        let routes = doc.paths.paths.iter().map(|(template, item)| {
            let declared =
                [("GET", &item.get), ("PUT", &item.put), ("POST", &item.post), ("DELETE", &item.delete)];
            let methods: Vec<&str> =
                declared.iter().filter(|(_, op)| op.is_some()).map(|(m, _)| *m).collect();
            (template.split('/').map(str::to_string).collect(), methods.join(", "))
        });
        routes.collect()
    });
    let segments: Vec<&str> = path.split('/').collect();
    let matches = |template: &[String]| {
        // `{path}` (a file's path) takes the rest, slashes included.
        let rest = template.last().is_some_and(|s| s == "{path}");
        (segments.len() == template.len() || rest && segments.len() > template.len())
            && template.iter().zip(&segments).all(|(t, s)| (t.starts_with('{') && !s.is_empty()) || t == s)
    };
    ROUTES.iter().find(|(template, _)| matches(template)).map(|(_, methods)| methods.clone())
}

/// The document as JSON (also `dataroom-operator openapi`).
pub fn document() -> String {
    ApiDoc::openapi().to_pretty_json().expect("the document serialises")
}

#[cfg(test)]
mod tests {
    use super::methods;

    #[test]
    fn methods_of_documented_routes() {
        assert_eq!(methods("/api/ec2/instances").as_deref(), Some("GET, POST"));
        assert_eq!(methods("/api/ec2/instances/web/files/etc/dataroom/config.json").as_deref(), Some("GET"));
        assert_eq!(methods("/api/ec2/instances//start"), None, "an empty name matches no route");
        assert_eq!(methods("/api/nothing"), None);
    }
}
