//! Small parsing and formatting helpers shared by the library and the CLI.

/// Most bytes one write to a local file passes to the kernel (256 KiB): pulls write chunks
/// in pieces of this size, and a local vault's objects are written so. Measured on ext4 (a
/// guest kernel, 1.5 GB written by four threads taking turns): 8 MiB writes cost 2.2-3.3 s
/// of system time, the same bytes as 256 KiB writes 0.36-0.44 s; a pull of 8 MiB chunks
/// spent a fifth of its CPU time in the page-cache copy before this, a push into a local
/// vault (2 MiB writes) a fifth too.
pub const WRITE_PIECE_BYTES: usize = 256 * 1024;

/// Parses a byte size: a number with an optional binary suffix `K`, `M`, `G`, `T`
/// (also `KiB`/`KB`/`k` forms, all meaning powers of 1024). `1.5G` is allowed.
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().ok()?;
    let mult: u64 = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "K" | "KB" | "KIB" => 1 << 10,
        "M" | "MB" | "MIB" => 1 << 20,
        "G" | "GB" | "GIB" => 1 << 30,
        "T" | "TB" | "TIB" => 1 << 40,
        _ => return None,
    };
    let v = n * mult as f64;
    (v.is_finite() && v >= 0.0).then_some(v as u64)
}

/// Parses a duration such as `30s`, `15m`, `24h`, `7d`, `2w` into seconds.
pub fn parse_duration_secs(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    let mult = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return None,
    };
    n.checked_mul(mult)
}

/// Human-readable bytes with binary units (`1.4 GiB`).
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < UNITS.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[i])
    }
}

/// `$XDG_DATA_HOME/mvault`, else `~/.local/share/mvault`: the default local vault
/// (`vault/`) and the audit log (`logs/`).
pub fn data_dir() -> std::path::PathBuf {
    xdg_dir("XDG_DATA_HOME", ".local/share").join("mvault")
}

/// `$XDG_CACHE_HOME/mvault`, else `~/.cache/mvault`: the default local cache.
pub fn cache_dir() -> std::path::PathBuf {
    xdg_dir("XDG_CACHE_HOME", ".cache").join("mvault")
}

fn xdg_dir(var: &str, fallback: &str) -> std::path::PathBuf {
    match std::env::var_os(var).filter(|v| !v.is_empty()) {
        Some(v) => v.into(),
        None => std::env::var_os("HOME")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| "/".into())
            .join(fallback),
    }
}

/// `user@host` of this process, recorded as who pushed a version, moved an alias or ran a
/// command: the user is `$USER`, else `$LOGNAME`, `$USERNAME`, else the name of this uid in
/// `/etc/passwd` (containers often set no `$USER`), else the uid number.
pub fn user_at_host() -> String {
    let host = gethostname::gethostname().to_string_lossy().into_owned();
    let host = if host.is_empty() {
        "unknown".into()
    } else {
        host
    };
    format!("{}@{host}", user_name())
}

/// The user part of [`user_at_host`].
pub fn user_name() -> String {
    let uid = rustix::process::getuid().as_raw();
    ["USER", "LOGNAME", "USERNAME"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.trim().is_empty()))
        .or_else(|| {
            let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
            passwd_name(&passwd, uid)
        })
        .unwrap_or_else(|| uid.to_string())
}

/// The name of `uid` in the text of an `/etc/passwd` file (`name:x:uid:gid:...`).
fn passwd_name(passwd: &str, uid: u32) -> Option<String> {
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next().filter(|n| !n.is_empty())?;
        let id: u32 = fields.nth(1)?.parse().ok()?;
        (id == uid).then(|| name.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("20G"), Some(20 << 30));
        assert_eq!(parse_size("1.5K"), Some(1536));
        assert_eq!(parse_size("512"), Some(512));
        assert_eq!(parse_size("10MiB"), Some(10 << 20));
        assert_eq!(parse_size("ten"), None);
        assert_eq!(parse_size("5X"), None);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration_secs("7d"), Some(7 * 86_400));
        assert_eq!(parse_duration_secs("90"), Some(90));
        assert_eq!(parse_duration_secs("1y"), None);
    }

    #[test]
    fn passwd_lookup() {
        let passwd =
            "root:x:0:0:root:/root:/bin/sh\n\nbad line\nml:x:1000:1000::/home/ml:/bin/sh\n";
        assert_eq!(passwd_name(passwd, 0).as_deref(), Some("root"));
        assert_eq!(passwd_name(passwd, 1000).as_deref(), Some("ml"));
        assert_eq!(passwd_name(passwd, 4242), None);
    }

    #[test]
    fn human() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
    }
}
