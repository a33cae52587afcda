//! What a key may do. Each handler takes `Authorized<needs::X>` for the scope its operation needs,
//! so a handler cannot be written that skips the check (`Admin` alone cannot be extracted), and the
//! OpenAPI document states the same scope for each operation (a test holds the two together).

use std::collections::BTreeSet;
use std::marker::PhantomData;

use actix_web::{FromRequest, HttpRequest, dev::Payload};

use super::auth::{Admin, authenticate};
use super::error::ApiError;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    /// Every GET but the audit log and file downloads.
    Read,
    /// Create, start, stop and delete instances; start and stop rooms.
    Lifecycle,
    /// `exec` and `exec-batch`.
    Exec,
    /// Upload, download, push-files, push-config.
    Files,
    /// Create AMIs.
    Images,
    /// Create and delete key pairs.
    Keypairs,
    /// Change the budget.
    Budget,
    /// Read and verify the audit log.
    Audit,
}

impl Scope {
    pub const ALL: [Scope; 8] = [
        Scope::Read,
        Scope::Lifecycle,
        Scope::Exec,
        Scope::Files,
        Scope::Images,
        Scope::Keypairs,
        Scope::Budget,
        Scope::Audit,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Lifecycle => "lifecycle",
            Scope::Exec => "exec",
            Scope::Files => "files",
            Scope::Images => "images",
            Scope::Keypairs => "keypairs",
            Scope::Budget => "budget",
            Scope::Audit => "audit",
        }
    }

    /// A list like `read,exec`, or `all`.
    pub fn parse_list(text: &str) -> Result<BTreeSet<Scope>, String> {
        let mut scopes = BTreeSet::new();
        for word in text.split(',').map(str::trim) {
            if word == "all" {
                scopes.extend(Scope::ALL);
                continue;
            }
            let scope = Scope::ALL.into_iter().find(|s| s.name() == word);
            let known = || Scope::ALL.map(Scope::name).join(", ");
            scopes.insert(scope.ok_or_else(|| format!("unknown scope `{word}` (known: {}, all)", known()))?);
        }
        Ok(scopes)
    }
}

/// The scope a handler's operation needs, as a type.
pub trait Required {
    const SCOPE: Scope;
}

/// One marker type per scope, for `Authorized<needs::Exec>` and the like.
pub mod needs {
    macro_rules! markers {
        ($($marker:ident),*) => {$(
            pub struct $marker;
            impl super::Required for $marker {
                const SCOPE: super::Scope = super::Scope::$marker;
            }
        )*};
    }
    markers!(Read, Lifecycle, Exec, Files, Images, Keypairs, Budget, Audit);
}

/// A caller whose key is valid and holds the scope `S`.
pub struct Authorized<S> {
    admin: Admin,
    scope: PhantomData<S>,
}

impl<S> std::ops::Deref for Authorized<S> {
    type Target = Admin;

    fn deref(&self) -> &Admin {
        &self.admin
    }
}

impl<S: Required> FromRequest for Authorized<S> {
    type Error = ApiError;
    type Future = futures::future::LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let admin = authenticate(&req, S::SCOPE).await?;
            admin.holds(S::SCOPE)?;
            Ok(Authorized { admin, scope: PhantomData })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_lists_parse_by_name_and_all_is_every_scope() {
        assert_eq!(Scope::parse_list("read,exec").unwrap(), BTreeSet::from([Scope::Read, Scope::Exec]));
        assert_eq!(Scope::parse_list("all").unwrap().len(), Scope::ALL.len());
        assert!(Scope::parse_list("read,root").unwrap_err().contains("unknown scope `root`"));
        for scope in Scope::ALL {
            assert_eq!(Scope::parse_list(scope.name()).unwrap(), BTreeSet::from([scope]));
        }
    }
}
