//! The SDK client of an S3 destination: credentials and region from the standard AWS chain, the
//! endpoint and addressing of a self-hosted store, and the checksum settings such stores accept.

use aws_sdk_s3::Client;

use super::{S3Dir, S3Spec};

impl S3Dir {
    /// Builds the client from the AWS chain and `spec`. Nothing is contacted yet.
    pub async fn new(mut spec: S3Spec) -> S3Dir {
        let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .load()
            .await;
        let mut conf = aws_sdk_s3::config::Builder::from(&shared);
        if let Some(endpoint) = &spec.endpoint {
            conf = conf.endpoint_url(endpoint);
        } else if let Some(endpoint) = shared.endpoint_url() {
            spec.endpoint = Some(endpoint.to_string());
        }
        let custom = spec.endpoint.is_some();
        conf = conf.force_path_style(spec.path_style.unwrap_or(custom));
        if shared.region().is_none() {
            conf = conf.region(aws_sdk_s3::config::Region::new("us-east-1"));
        }
        if custom {
            // Self-hosted stores vary in their support of the newer default checksums; send and
            // check them only where S3 requires them. The archive's own sha256 is checked anyway.
            conf = conf
                .request_checksum_calculation(
                    aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired,
                )
                .response_checksum_validation(
                    aws_sdk_s3::config::ResponseChecksumValidation::WhenRequired,
                );
        }
        S3Dir {
            client: Client::from_conf(conf.build()),
            spec,
        }
    }
}
