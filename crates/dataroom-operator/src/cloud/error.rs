use thiserror::Error;

/// How the caller should treat a failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ErrorKind {
    /// Retrying cannot help until someone changes the request (bad AMI, unknown type, no permission).
    Terminal,
    /// Worth retrying with backoff (throttling, capacity, 5xx, network).
    Retryable,
    /// The target does not exist.
    NotFound,
}

#[derive(Debug, Error, serde::Serialize, serde::Deserialize)]
#[error("{code}: {message}")]
pub struct CloudError {
    pub kind: ErrorKind,
    /// The AWS error code (or a short code of our own for transport failures).
    pub code: String,
    pub message: String,
}

impl CloudError {
    pub fn new(kind: ErrorKind, code: impl Into<String>, message: impl Into<String>) -> Self {
        Self { kind, code: code.into(), message: message.into() }
    }

    pub fn is_not_found(&self) -> bool {
        self.kind == ErrorKind::NotFound
    }

    /// A stable low-cardinality label for metrics.
    pub fn label(&self) -> &'static str {
        match self.kind {
            ErrorKind::Terminal => "terminal",
            ErrorKind::Retryable => "retryable",
            ErrorKind::NotFound => "not_found",
        }
    }
}

/// Classifies an AWS error code (and HTTP status, when known) as terminal, retryable or not-found.
pub fn classify(code: &str, status: Option<u16>, message: &str) -> CloudError {
    const NOT_FOUND: &[&str] = &[
        "InvalidInstanceID.NotFound",
        "InvalidInstanceID.Malformed",
        "InvalidKeyPair.NotFound",
        "InvalidAMIID.NotFound",
        "ResourceNotFoundException",
        "NoSuchKey",
        "NoSuchBucket",
    ];
    const TERMINAL_PREFIXES: &[&str] = &[
        "InvalidAMIID",
        "InvalidParameter",
        "InvalidSubnetID",
        "InvalidGroup",
        "InvalidKeyPair",
        "InvalidInstanceType",
        "InvalidUserData",
        "InvalidBlockDeviceMapping",
        "Unsupported",
        "UnauthorizedOperation",
        "AuthFailure",
        "AccessDenied",
        "OptInRequired",
        "Blocked",
        "InvalidClientTokenId",
        "MissingParameter",
        "ValidationException",
    ];
    let kind = if NOT_FOUND.contains(&code) {
        ErrorKind::NotFound
    } else if TERMINAL_PREFIXES.iter().any(|p| code.starts_with(p)) {
        ErrorKind::Terminal
    } else if status.is_some_and(|s| (400..500).contains(&s))
        && !code.contains("Throttl")
        && !code.contains("LimitExceeded")
        && !code.contains("Capacity")
        && code != "IncorrectInstanceState"
        && code != "IncorrectState"
    {
        // Any other client error is a request that will fail the same way next time.
        ErrorKind::Terminal
    } else {
        ErrorKind::Retryable
    };
    CloudError::new(kind, code, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_classified() {
        let kind = |code, status| classify(code, status, "m").kind;
        assert_eq!(kind("InvalidAMIID.Malformed", Some(400)), ErrorKind::Terminal);
        assert_eq!(kind("InvalidAMIID.NotFound", Some(400)), ErrorKind::NotFound);
        assert_eq!(kind("InvalidParameterValue", Some(400)), ErrorKind::Terminal);
        assert_eq!(kind("UnauthorizedOperation", Some(403)), ErrorKind::Terminal);
        assert_eq!(kind("RequestLimitExceeded", Some(503)), ErrorKind::Retryable);
        assert_eq!(kind("Throttling", Some(400)), ErrorKind::Retryable);
        assert_eq!(kind("InsufficientInstanceCapacity", Some(500)), ErrorKind::Retryable);
        assert_eq!(kind("InternalError", Some(500)), ErrorKind::Retryable);
        assert_eq!(kind("ServiceUnavailable", None), ErrorKind::Retryable);
        assert_eq!(kind("IncorrectInstanceState", Some(400)), ErrorKind::Retryable);
        assert_eq!(kind("InvalidInstanceID.NotFound", Some(400)), ErrorKind::NotFound);
        assert_eq!(kind("ResourceNotFoundException", Some(400)), ErrorKind::NotFound);
        assert_eq!(kind("SomethingNew", Some(400)), ErrorKind::Terminal);
        assert_eq!(kind("dispatch", None), ErrorKind::Retryable);
    }
}
