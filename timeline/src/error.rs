//! The error type of the timeline crate.

/// Errors raised while reading or publishing the timeline.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A string is not a valid Hudi instant time.
    #[error("invalid instant time {value:?}: expected 17 (or 14) digits yyyyMMddHHmmss[SSS]")]
    InvalidInstantTime {
        /// The offending text.
        value: String,
    },
    /// A table URI could not be understood.
    #[error("invalid table URI {uri:?}: {reason}")]
    InvalidUri {
        /// The URI as given.
        uri: String,
        /// Why it was refused.
        reason: String,
    },
    /// Another writer published the same instant state first.
    #[error("commit conflict: instant {instant} was already published by another writer ({path})")]
    CommitConflict {
        /// The instant time that lost the race.
        instant: String,
        /// The file that already existed.
        path: String,
    },
    /// A file the caller expected does not exist.
    #[error("not found: {path}")]
    NotFound {
        /// The missing path.
        path: String,
    },
    /// The object store failed.
    #[error("storage error at {path}: {source}{hint}", hint = StoreHint::of(source).map_or(String::new(), |h| format!(" ({})", h.text())))]
    Storage {
        /// The path being accessed.
        path: String,
        /// The underlying object-store error.
        #[source]
        source: object_store::Error,
    },
    /// A metadata file could not be parsed or is not supported.
    #[error("bad timeline metadata in {path}: {reason}")]
    Metadata {
        /// The file being parsed.
        path: String,
        /// What was wrong.
        reason: String,
    },
}

impl Error {
    /// Whether retrying the same operation (after reloading the timeline) may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::CommitConflict { .. } => true,
            Error::Storage { source, .. } => {
                !matches!(
                    source,
                    object_store::Error::NotFound { .. }
                        | object_store::Error::NotSupported { .. }
                        | object_store::Error::PermissionDenied { .. }
                        | object_store::Error::Unauthenticated { .. }
                ) && StoreHint::of(source).is_none_or(|h| h.may_pass())
            }
            _ => false,
        }
    }
}

/// What an object-store error most likely means for the user, recognised from the error text the
/// S3 client gives (which names transport details, not the setting to change).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreHint {
    /// No credentials were configured, so the client asked the instance-metadata service.
    NoCredentials,
    /// The endpoint is `http://` and plain HTTP is not allowed.
    HttpNotAllowed,
    /// The server refused the credentials or the signature.
    BadCredentials,
    /// The bucket does not exist.
    NoBucket,
    /// Nothing answers at the endpoint.
    NoEndpoint,
}

impl StoreHint {
    /// The hint for an object-store error, if its text is recognised.
    pub fn of(e: &object_store::Error) -> Option<Self> {
        let mut text = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            text.push_str(": ");
            text.push_str(&s.to_string());
            source = s.source();
        }
        Self::of_text(&text)
    }

    /// The hint for an error's text.
    pub fn of_text(text: &str) -> Option<Self> {
        if text.contains("169.254.169.254") || text.contains("/latest/api/token") {
            Some(Self::NoCredentials)
        } else if text.contains("URL scheme is not allowed") {
            Some(Self::HttpNotAllowed)
        } else if text.contains("NoSuchBucket") || text.contains("bucket does not exist") {
            Some(Self::NoBucket)
        } else if text.contains("InvalidAccessKeyId")
            || text.contains("SignatureDoesNotMatch")
            || text.contains("AccessDenied")
        {
            Some(Self::BadCredentials)
        } else if text.contains("tcp connect error")
            || text.contains("dns error")
            || text.contains("failed to lookup address")
        {
            Some(Self::NoEndpoint)
        } else {
            None
        }
    }

    /// What to set or check.
    pub fn text(self) -> &'static str {
        match self {
            Self::NoCredentials => {
                "no S3 credentials were found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, \
                 or run where an instance role or AWS_PROFILE provides them"
            }
            Self::HttpNotAllowed => {
                "the S3 endpoint is plain http://: set AWS_ALLOW_HTTP=true to allow it"
            }
            Self::BadCredentials => {
                "the S3 server refused the credentials: check AWS_ACCESS_KEY_ID, \
                 AWS_SECRET_ACCESS_KEY and AWS_REGION"
            }
            Self::NoBucket => "the bucket does not exist: create it or fix the table URI",
            Self::NoEndpoint => {
                "nothing answers at the S3 endpoint: check AWS_ENDPOINT_URL (when set) and that \
                 the server runs"
            }
        }
    }

    /// Whether the condition can pass by itself (a server coming back, a credentials service
    /// answering again, a policy fixed meanwhile), so that retrying is worth it. Only a setting of
    /// this process (plain http refused) or a missing bucket cannot.
    pub fn may_pass(self) -> bool {
        !matches!(self, Self::HttpNotAllowed | Self::NoBucket)
    }
}

/// Result alias of the timeline crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_errors_name_what_to_set() {
        let cases = [
            (
                "Generic S3 error: Error performing PUT http://169.254.169.254/latest/api/token in 3ms - 403 Forbidden",
                Some(StoreHint::NoCredentials),
            ),
            (
                "Generic S3 error: Error performing GET http://127.0.0.1:9/b/t - HTTP error: builder error: URL scheme is not allowed",
                Some(StoreHint::HttpNotAllowed),
            ),
            (
                "Generic S3 error: after 10 retries - HTTP error: error sending request: client error (Connect): tcp connect error: Connection refused (os error 111)",
                Some(StoreHint::NoEndpoint),
            ),
            ("<Code>NoSuchBucket</Code>", Some(StoreHint::NoBucket)),
            (
                "<Code>SignatureDoesNotMatch</Code>",
                Some(StoreHint::BadCredentials),
            ),
            ("Object at location x not found", None),
        ];
        for (text, hint) in cases {
            assert_eq!(StoreHint::of_text(text), hint, "{text}");
        }
        let e = Error::Storage {
            path: "s3://b/t/.hoodie/hoodie.properties".into(),
            source: object_store::Error::Generic {
                store: "S3",
                source: "Error performing GET http://h/b - URL scheme is not allowed".into(),
            },
        };
        assert!(
            e.to_string().ends_with(
                "(the S3 endpoint is plain http://: set AWS_ALLOW_HTTP=true to allow it)"
            ),
            "{e}"
        );
        assert!(!e.is_retryable(), "a setting to change is not retried");
    }
}
