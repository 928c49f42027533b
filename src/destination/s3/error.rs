//! S3 failures by case: an SDK error (or a credential chain that found nothing) becomes a
//! [`DestError`] whose message names the destination and says what to check.

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};

use super::super::DestError;

/// Maps an SDK error to its case, with a message that names the destination and says what to
/// check. SDK errors never carry the secret key, and neither does this.
pub(super) fn s3_error<E>(dest: &str, action: &str, err: SdkError<E, HttpResponse>) -> DestError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let dest = dest.to_string();
    let chain = source_chain(&err);
    // The credential chain fails inside the request (as a dispatch failure): before anything
    // reached the endpoint, so it is never said to be unreachable.
    if let Some(why) = credentials_failure(&err) {
        return DestError::Authentication {
            dest,
            message: format!("cannot {action}: {why}"),
        };
    }
    match &err {
        SdkError::DispatchFailure(f) => {
            let why = if f.is_timeout() {
                "timed out"
            } else if f.is_io() {
                "connection failed"
            } else {
                chain.as_str()
            };
            return DestError::Unreachable {
                dest,
                message: format!("cannot {action}: cannot reach the S3 endpoint ({why}); check the endpoint URL (--s3-endpoint / AWS_ENDPOINT_URL) and that the server is up"),
            };
        }
        SdkError::TimeoutError(_) => {
            return DestError::Unreachable {
                dest,
                message: format!("cannot {action}: the S3 endpoint did not answer in time; check the endpoint and the network"),
            };
        }
        SdkError::ConstructionFailure(_) => {
            return DestError::Unusable {
                dest,
                message: format!("cannot {action}: the request could not be built ({chain}); check the credentials (AWS_ACCESS_KEY_ID / AWS_PROFILE) and the region"),
            };
        }
        _ => {}
    }
    let code = err.code().unwrap_or("");
    let detail = err.message().unwrap_or("").to_string();
    let status = raw_status(&err);
    match (code, status) {
        ("NoSuchBucket", _) => DestError::UnknownBucket {
            dest,
            message: format!("cannot {action}: the bucket does not exist; create it or fix the URL"),
        },
        (
            "InvalidAccessKeyId" | "SignatureDoesNotMatch" | "InvalidSignature"
            | "AuthorizationHeaderMalformed" | "ExpiredToken" | "InvalidToken",
            _,
        ) => DestError::Authentication {
            dest,
            message: format!("cannot {action}: the store rejected the credentials ({code}); check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or the profile, and the region"),
        },
        // Garage answers a bad signature with 403 "Forbidden: Invalid signature".
        (_, Some(403)) if detail.to_ascii_lowercase().contains("signature") => {
            DestError::Authentication {
                dest,
                message: format!("cannot {action}: the store rejected the credentials ({detail}); check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or the profile, and the region"),
            }
        }
        ("AccessDenied" | "Forbidden", _) | (_, Some(403)) => DestError::AccessDenied {
            dest,
            message: format!(
                "cannot {action}: access denied ({}); check that the credentials may read and write this bucket and prefix",
                if detail.is_empty() { "HTTP 403" } else { detail.as_str() }
            ),
        },
        ("NoSuchKey" | "NotFound", _) | (_, Some(404)) => DestError::NotFound {
            dest,
            name: action.to_string(),
        },
        (_, Some(400)) if code.is_empty() => DestError::Unusable {
            dest,
            message: format!("cannot {action}: the store refused the request (HTTP 400); check the region and credentials"),
        },
        _ => DestError::Unusable {
            dest,
            message: format!(
                "cannot {action}: {} {detail}",
                if code.is_empty() { chain.as_str() } else { code }
            )
            .trim()
            .to_string(),
        },
    }
}

/// What every command says when the AWS chain finds no credentials.
const NO_CREDENTIALS: &str =
    "no AWS credentials found (set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE)";

/// Why no request could be signed, when loading the credentials is what failed. The chain ends
/// at the instance metadata service, so "none anywhere" also reads as an error of that service
/// (on EC2 with IMDS turned off it answers 403; elsewhere the address may answer anything):
/// that, a chain with nothing configured, and one that ran out of time are "no credentials".
/// A source that is configured but fails (a profile's SSO or role, a credential process) is said
/// with its own reason.
fn credentials_failure(err: &(dyn std::error::Error + 'static)) -> Option<String> {
    use aws_config::imds::client::error::ImdsError;
    use aws_credential_types::provider::error::CredentialsError;
    let causes = || std::iter::successors(Some(err), |e| e.source());
    let failed = causes().find_map(|e| e.downcast_ref::<CredentialsError>())?;
    let from_imds =
        std::iter::successors(Some(failed as &(dyn std::error::Error + 'static)), |e| {
            e.source()
        })
        .any(|e| e.downcast_ref::<ImdsError>().is_some());
    // A profile that is named but missing (or gives no keys) is passed over by the chain.
    let none = match std::env::var("AWS_PROFILE").ok().filter(|p| !p.is_empty()) {
        Some(profile) => {
            format!("{NO_CREDENTIALS}; the profile AWS_PROFILE names, {profile:?}, gives none")
        }
        None => NO_CREDENTIALS.to_string(),
    };
    Some(match failed {
        CredentialsError::CredentialsNotLoaded(_) | CredentialsError::ProviderTimedOut(_) => none,
        _ if from_imds => none,
        _ => format!(
            "cannot load the AWS credentials ({}); check AWS_PROFILE and its files, or set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY",
            source_chain(failed)
        ),
    })
}

/// The HTTP status of the store's answer, from the raw response.
pub(super) fn raw_status<E>(err: &SdkError<E, HttpResponse>) -> Option<u16> {
    err.raw_response().map(|r| r.status().as_u16())
}

fn source_chain(err: &dyn std::error::Error) -> String {
    let mut parts = vec![err.to_string()];
    let mut cur = err.source();
    while let Some(e) = cur {
        parts.push(e.to_string());
        cur = e.source();
    }
    parts.join(": ")
}

pub(super) fn is_not_found<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> bool {
    matches!(err.code(), Some("NoSuchKey") | Some("NotFound")) || raw_status(err) == Some(404)
}
