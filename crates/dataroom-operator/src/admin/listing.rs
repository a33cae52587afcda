//! Paged lists with validators: items sorted by `namespace/name`, `limit` and `continue` by key
//! (a page starts after the last key the previous one gave, so that an item created or deleted
//! meanwhile shifts nothing: no item that stays is seen twice or skipped), and an `ETag` over the
//! page's bytes, answered with `304 Not Modified` when `If-None-Match` names it. Items are
//! rendered to JSON once and kept while nothing they show changes (`Rendered`), so that a list
//! of 1,000s costs a copy of bytes rather than 1,000s of serialisations.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex};

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::{Bytes, BytesMut};
use serde::Serialize;

use super::error::ApiError;

/// The most items one page holds (without `limit`, a list is whole).
pub const MAX_LIMIT: u32 = 5000;

/// One list item, rendered, with what lists filter it by (`facets`).
#[derive(Clone, Debug)]
pub struct Item<F = ()> {
    pub namespace: String,
    pub name: String,
    pub facets: F,
    pub json: Bytes,
    hash: u64,
}

impl<F> Item<F> {
    pub fn render(namespace: String, name: String, facets: F, view: &impl Serialize) -> Self {
        let json = Bytes::from(serde_json::to_vec(view).expect("a view serialises"));
        let mut hasher = DefaultHasher::new();
        json.hash(&mut hasher);
        Item { namespace, name, facets, json, hash: hasher.finish() }
    }

    fn key(&self) -> (&str, &str) {
        (&self.namespace, &self.name)
    }
}

/// The last rendering of a list, kept while its `version` (whatever the items show depends on)
/// stays the same.
pub struct Rendered<F> {
    last: Mutex<Option<(u64, Items<F>)>>,
}

/// A list's items, sorted by key.
pub type Items<F> = Arc<Vec<Item<F>>>;

impl<F> Default for Rendered<F> {
    fn default() -> Self {
        Rendered { last: Mutex::new(None) }
    }
}

impl<F> Rendered<F> {
    /// The items for `version`, sorted by key: the kept ones, or `render()`'s.
    pub fn get(&self, version: u64, render: impl FnOnce() -> Vec<Item<F>>) -> Items<F> {
        if let Some((kept, items)) = self.last.lock().unwrap().as_ref()
            && *kept == version
        {
            return items.clone();
        }
        let mut items = render();
        items.sort_by(|a, b| a.key().cmp(&b.key()));
        let items = Arc::new(items);
        *self.last.lock().unwrap() = Some((version, items.clone()));
        items
    }
}

/// `limit` and `continue` as asked, checked.
pub struct Paging {
    limit: usize,
    after: Option<(String, String)>,
}

impl Paging {
    pub fn parse(limit: Option<u32>, token: Option<&str>) -> Result<Self, ApiError> {
        let limit = match limit {
            Some(n) if n == 0 || n > MAX_LIMIT => {
                return Err(ApiError::bad_request("invalid_limit", format!("limit: 1 to {MAX_LIMIT}")));
            }
            Some(n) => n as usize,
            None => usize::MAX,
        };
        let after = token.map(decode).transpose()?;
        Ok(Paging { limit, after })
    }

    /// The page of `items` (sorted by key, already filtered) this asks for, and the token of
    /// the next page if there is one.
    pub fn page<'a, F: 'a>(
        &self,
        items: impl Iterator<Item = &'a Item<F>>,
    ) -> (Vec<&'a Item<F>>, Option<String>) {
        let after = self.after.as_ref().map(|(ns, n)| (ns.as_str(), n.as_str()));
        let mut rest = items.filter(|i| after.is_none_or(|a| i.key() > a));
        let page: Vec<&Item<F>> = rest.by_ref().take(self.limit).collect();
        let more = rest.next().is_some();
        let next = page.last().filter(|_| more).map(|last| encode(&last.namespace, &last.name));
        (page, next)
    }
}

fn encode(namespace: &str, name: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{namespace}/{name}"))
}

fn decode(token: &str) -> Result<(String, String), ApiError> {
    let invalid = || ApiError::bad_request("invalid_continue", "continue: not a token this list gave");
    let text =
        URL_SAFE_NO_PAD.decode(token).ok().and_then(|b| String::from_utf8(b).ok()).ok_or_else(invalid)?;
    let (namespace, name) = text.split_once('/').ok_or_else(invalid)?;
    Ok((namespace.to_string(), name.to_string()))
}

/// The page's entity tag: a hash over its items' bytes and where it ends.
fn etag<F>(page: &[&Item<F>], next: Option<&str>) -> String {
    let mut hasher = DefaultHasher::new();
    page.iter().for_each(|i| i.hash.hash(&mut hasher));
    next.hash(&mut hasher);
    format!("\"{:016x}\"", hasher.finish())
}

/// `If-None-Match` names `tag` (or is `*`).
fn not_modified(request: &HttpRequest, tag: &str) -> bool {
    let asked = request.headers().get_all(header::IF_NONE_MATCH).filter_map(|v| v.to_str().ok());
    asked
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|t| t == tag || t == "*" || t.strip_prefix("W/") == Some(tag))
}

/// The answer for a page: 304 when the client has it, else 200 with `prefix`, the items joined
/// by commas, and `suffix`. The next page's token is in `X-Continue` and in a `Link` header
/// (`rel="next"`) built from the request's own path and query.
pub fn respond<F>(
    request: &HttpRequest,
    page: &[&Item<F>],
    next: Option<&str>,
    prefix: &[u8],
    suffix: &[u8],
) -> HttpResponse {
    let tag = etag(page, next);
    let mut response =
        if not_modified(request, &tag) { HttpResponse::NotModified() } else { HttpResponse::Ok() };
    response.insert_header((header::ETAG, tag.clone()));
    response.insert_header((header::CACHE_CONTROL, "no-cache"));
    if let Some(token) = next {
        response.insert_header(("X-Continue", token.to_string()));
        response.insert_header((header::LINK, format!("<{}>; rel=\"next\"", next_url(request, token))));
    }
    if not_modified(request, &tag) {
        return response.finish();
    }
    let size = prefix.len() + suffix.len() + page.iter().map(|i| i.json.len() + 1).sum::<usize>();
    let mut body = BytesMut::with_capacity(size);
    body.extend_from_slice(prefix);
    for (n, item) in page.iter().enumerate() {
        if n > 0 {
            body.extend_from_slice(b",");
        }
        body.extend_from_slice(&item.json);
    }
    body.extend_from_slice(suffix);
    response.content_type("application/json").body(body.freeze())
}

/// The request's URL with `continue` set to `token` (other parameters kept).
fn next_url(request: &HttpRequest, token: &str) -> String {
    let kept = request.query_string().split('&').filter(|p| !p.is_empty() && !p.starts_with("continue="));
    let query: Vec<String> = kept.map(str::to_string).chain([format!("continue={token}")]).collect();
    format!("{}?{}", request.path(), query.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(keys: &[(&str, &str)]) -> Vec<Item> {
        keys.iter()
            .map(|(ns, n)| Item::render(ns.to_string(), n.to_string(), (), &format!("{ns}/{n}")))
            .collect()
    }

    fn names(page: &[&Item]) -> Vec<String> {
        page.iter().map(|i| format!("{}/{}", i.namespace, i.name)).collect()
    }

    #[test]
    fn pages_follow_keys_so_changes_between_pages_shift_nothing() {
        let all = items(&[("a", "1"), ("a", "2"), ("b", "1"), ("b", "2"), ("c", "1")]);
        let first = Paging::parse(Some(2), None).unwrap();
        let (page, next) = first.page(all.iter());
        assert_eq!(names(&page), ["a/1", "a/2"]);
        // Meanwhile a/1 is deleted and a/3 created: the next page starts after a/2 all the same.
        let changed = items(&[("a", "2"), ("a", "3"), ("b", "1"), ("b", "2"), ("c", "1")]);
        let second = Paging::parse(Some(2), next.as_deref()).unwrap();
        let (page, next) = second.page(changed.iter());
        assert_eq!(names(&page), ["a/3", "b/1"]);
        let (page, next) = Paging::parse(Some(2), next.as_deref()).unwrap().page(changed.iter());
        assert_eq!(names(&page), ["b/2", "c/1"]);
        assert_eq!(next, None, "no token after the last page");
    }

    #[test]
    fn bad_limits_and_tokens_are_refused_with_their_codes() {
        for (limit, token, code) in [
            (Some(0), None, "invalid_limit"),
            (Some(MAX_LIMIT + 1), None, "invalid_limit"),
            (None, Some("not base64!"), "invalid_continue"),
            (None, Some(URL_SAFE_NO_PAD.encode("no-slash").as_str()), "invalid_continue"),
        ] {
            let refused = Paging::parse(limit, token).err().expect("refused");
            assert_eq!(refused.problem().code, code);
        }
    }

    #[test]
    fn the_tag_changes_with_any_item_and_with_where_the_page_ends() {
        let all = items(&[("a", "1"), ("a", "2")]);
        let page: Vec<&Item> = all.iter().collect();
        let tag = etag(&page, None);
        assert_eq!(tag, etag(&page, None));
        assert_ne!(tag, etag(&page[..1], None));
        assert_ne!(tag, etag(&page, Some("x")));
        let other = items(&[("a", "1"), ("a", "3")]);
        assert_ne!(tag, etag(&other.iter().collect::<Vec<_>>(), None));
    }
}
