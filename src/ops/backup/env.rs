//! A snapshot's record of the container without its secrets: environment values replaced by a
//! keyed hash under a key only this host holds.

/// Replaces the values of the container's environment (`Config.Env`: passwords, `SECRET_KEY`)
/// with a keyed hash (HMAC-SHA256 under `key`, a secret only this host holds, of the container
/// id `salt`, the name and the value), keeping the names: a snapshot never stores secrets in
/// clear, nor anything a guess at a short value could be checked against without the key, but
/// still shows which variables were set and whether a value changed between snapshots.
pub fn redact_env(inspect: &mut serde_json::Value, key: &[u8], salt: &str) {
    use hmac::{Hmac, Mac};
    let Some(env) = inspect
        .pointer_mut("/Config/Env")
        .and_then(|e| e.as_array_mut())
    else {
        return;
    };
    for item in env.iter_mut() {
        let Some(text) = item.as_str() else { continue };
        let (name, value) = text.split_once('=').unwrap_or((text, ""));
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key).expect("any key length");
        mac.update(format!("{salt}\0{name}\0{value}").as_bytes());
        *item = serde_json::Value::String(format!(
            "{name}=<redacted hmac-sha256:{}>",
            &hex::encode(mac.finalize().into_bytes())[..16]
        ));
    }
}

/// This host's key for [`redact_env`]: 32 random bytes in `<state dir>/env-key` (mode 0600),
/// made on first use.
pub fn env_key(state: &std::path::Path) -> std::io::Result<Vec<u8>> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = state.join("env-key");
    if let Ok(key) = std::fs::read(&path) {
        if key.len() == 32 {
            return Ok(key);
        }
    }
    let key: [u8; 32] = rand::random();
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)?;
    f.write_all(&key)?;
    f.sync_all()?;
    // Another run may have made one meanwhile: the first one stays.
    if std::fs::hard_link(&tmp, &path).is_err() {
        let _ = std::fs::remove_file(&tmp);
        return std::fs::read(&path);
    }
    let _ = std::fs::remove_file(&tmp);
    Ok(key.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_env_values_are_redacted_but_names_kept() {
        let mut v =
            serde_json::json!({"Config": {"Env": ["SECRET_KEY=hunter2", "DEBUG=", "PATH=/bin"]}});
        redact_env(&mut v, b"key", "cid");
        let text = v.to_string();
        assert!(
            !text.contains("hunter2") && !text.contains("/bin"),
            "{text}"
        );
        assert!(
            text.contains("SECRET_KEY=<redacted hmac-sha256:") && text.contains("DEBUG=<redacted"),
            "{text}"
        );
        let mut again = serde_json::json!({"Config": {"Env": ["SECRET_KEY=hunter2"]}});
        redact_env(&mut again, b"key", "cid");
        assert_eq!(again["Config"]["Env"][0], v["Config"]["Env"][0]);
        // Without the key a guess cannot be checked: another key gives another hash.
        let mut other = serde_json::json!({"Config": {"Env": ["SECRET_KEY=hunter2"]}});
        redact_env(&mut other, b"another key", "cid");
        assert_ne!(other["Config"]["Env"][0], v["Config"]["Env"][0]);
    }
}
