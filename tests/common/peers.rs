//! The remote test peers `.ci/run` starts (sshd and a one-node Garage on 127.0.0.1), as the tests
//! see them: through environment variables set by `.ci/peers.sh`.
#![allow(dead_code)]

/// Reads a variable `.ci/peers.sh` exports; its absence is a set-up error, not a skipped test.
pub fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the tests with `bash .ci/run`, which starts sshd and Garage (see .ci/peers.sh)")
    })
}

/// The ssh config with the test Host aliases.
pub fn ssh_config() -> String {
    var("DOCKYARD_TEST_SSH_CONFIG")
}

/// Environment for dockyard to reach the test sshd.
pub fn ssh_env() -> Vec<(&'static str, String)> {
    vec![("DOCKYARD_SSH_CONFIG", ssh_config())]
}

/// Runs a command on the test sshd (as the login user) and returns its stdout.
pub fn ssh(script: &str) -> String {
    let out = std::process::Command::new("ssh")
        .args(["-F", &ssh_config(), "dockyard-test", script])
        .output()
        .expect("ssh runs");
    assert!(
        out.status.success(),
        "ssh {script:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// S3 access to a store: endpoint, bucket and a key pair.
#[derive(Clone)]
pub struct S3 {
    /// Endpoint URL.
    pub endpoint: String,
    /// Bucket the key may write.
    pub bucket: String,
    /// Access key id.
    pub key_id: String,
    /// Secret key.
    pub secret: String,
}

impl S3 {
    /// The suite's one-node Garage with its read-write key.
    pub fn garage() -> S3 {
        S3 {
            endpoint: var("DOCKYARD_TEST_S3_ENDPOINT"),
            bucket: var("DOCKYARD_TEST_S3_BUCKET"),
            key_id: var("DOCKYARD_TEST_S3_KEY_ID"),
            secret: var("DOCKYARD_TEST_S3_SECRET"),
        }
    }

    /// Environment for dockyard (the AWS chain plus the endpoint).
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", self.key_id.clone()),
            ("AWS_SECRET_ACCESS_KEY", self.secret.clone()),
            ("AWS_REGION", "garage".into()),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
            ("DOCKYARD_S3_ENDPOINT", self.endpoint.clone()),
        ]
    }

    /// An SDK client for checking what the store holds.
    pub fn client(&self) -> aws_sdk_s3::Client {
        let creds = aws_sdk_s3::config::Credentials::new(
            &self.key_id,
            &self.secret,
            None,
            None,
            "dockyard-tests",
        );
        let conf = aws_sdk_s3::config::Builder::new()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .credentials_provider(creds)
            .region(aws_sdk_s3::config::Region::new("garage"))
            .endpoint_url(&self.endpoint)
            .force_path_style(true)
            .build();
        aws_sdk_s3::Client::from_conf(conf)
    }

    /// Keys under `prefix/`, hidden ones included.
    pub fn keys(&self, prefix: &str) -> Vec<String> {
        let client = self.client();
        let bucket = self.bucket.clone();
        let prefix = format!("{prefix}/");
        rt().block_on(async move {
            let mut pages = client
                .list_objects_v2()
                .bucket(bucket)
                .prefix(prefix)
                .into_paginator()
                .send();
            let mut keys = Vec::new();
            while let Some(page) = pages.next().await {
                for o in page.expect("list objects").contents() {
                    keys.push(o.key().unwrap_or_default().to_string());
                }
            }
            keys.sort();
            keys
        })
    }

    /// The sizes of the parts `key` was uploaded in (one entry for a single PUT).
    pub fn part_sizes(&self, key: &str) -> Vec<u64> {
        let client = self.client();
        let bucket = self.bucket.clone();
        let key = key.to_string();
        rt().block_on(async move {
            let head = |n: i32| {
                client
                    .head_object()
                    .bucket(&bucket)
                    .key(&key)
                    .part_number(n)
                    .send()
            };
            let first = head(1).await.expect("head part 1");
            let count = first.parts_count().unwrap_or(1);
            let mut sizes = vec![first.content_length().unwrap_or(0) as u64];
            for n in 2..=count {
                let part = head(n).await.expect("head part");
                sizes.push(part.content_length().unwrap_or(0) as u64);
            }
            sizes
        })
    }

    /// Unfinished multipart uploads under `prefix/`.
    pub fn uploads(&self, prefix: &str) -> Vec<String> {
        let client = self.client();
        let bucket = self.bucket.clone();
        let prefix = format!("{prefix}/");
        rt().block_on(async move {
            let out = client
                .list_multipart_uploads()
                .bucket(bucket)
                .prefix(prefix)
                .send()
                .await
                .expect("list multipart uploads");
            out.uploads()
                .iter()
                .map(|u| u.key().unwrap_or_default().to_string())
                .collect()
        })
    }

    /// Writes object `key`.
    pub fn put(&self, key: &str, data: &[u8]) {
        let client = self.client();
        let (bucket, key, body) = (self.bucket.clone(), key.to_string(), data.to_vec());
        rt().block_on(async move {
            client
                .put_object()
                .bucket(bucket)
                .key(key)
                .body(body.into())
                .send()
                .await
                .expect("put object");
        })
    }

    /// Reads object `key`.
    pub fn get(&self, key: &str) -> Vec<u8> {
        let client = self.client();
        let (bucket, key) = (self.bucket.clone(), key.to_string());
        rt().block_on(async move {
            let out = client
                .get_object()
                .bucket(bucket)
                .key(key)
                .send()
                .await
                .expect("get object");
            out.body.collect().await.unwrap().into_bytes().to_vec()
        })
    }

    /// Deletes object `key`.
    pub fn delete(&self, key: &str) {
        let client = self.client();
        let (bucket, key) = (self.bucket.clone(), key.to_string());
        rt().block_on(async move {
            client
                .delete_object()
                .bucket(bucket)
                .key(key)
                .send()
                .await
                .expect("delete object");
        })
    }

    /// Starts a multipart upload of `key` (and leaves it unfinished).
    pub fn start_upload(&self, key: &str) {
        let client = self.client();
        let (bucket, key) = (self.bucket.clone(), key.to_string());
        rt().block_on(async move {
            client
                .create_multipart_upload()
                .bucket(bucket)
                .key(key)
                .send()
                .await
                .expect("create multipart upload");
        })
    }

    /// Deletes every key and aborts every unfinished upload under `prefix/` (test clean-up).
    pub fn clear(&self, prefix: &str) {
        let client = self.client();
        let bucket = self.bucket.clone();
        let keys = self.keys(prefix);
        let list = format!("{prefix}/");
        rt().block_on(async move {
            for k in keys {
                let _ = client.delete_object().bucket(&bucket).key(k).send().await;
            }
            if let Ok(out) = client
                .list_multipart_uploads()
                .bucket(&bucket)
                .prefix(list)
                .send()
                .await
            {
                for u in out.uploads() {
                    let _ = client
                        .abort_multipart_upload()
                        .bucket(&bucket)
                        .key(u.key().unwrap_or_default())
                        .upload_id(u.upload_id().unwrap_or_default())
                        .send()
                        .await;
                }
            }
        })
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Pairs as `dockyard_env` takes them.
pub fn pairs<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}
