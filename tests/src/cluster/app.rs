//! The app in each pod: nginx from Debian's `nginx-light` standing in for the nginx image,
//! serving a page that names its pod and logging every request with the fencing headers
//! the sidecar adds (`x-understudy-leader`, `x-understudy-epoch`, `x-understudy-lease`).

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};

use super::HarnessError;

/// The access log format: receipt-to-log time, status and fencing token, tab-separated.
/// `$msec` is the log time with millisecond resolution; `$request_time` how long nginx
/// spent on the request.
const LOG_FORMAT: &str = "$msec\\t$request_time\\t$status\\t$http_x_understudy_leader\\t$http_x_understudy_epoch\\t$http_x_understudy_lease\\t$request_method $request_uri";

/// Where nginx listens: port 80 on every address of the pod, as the nginx image does.
pub const ALL_ADDRESSES: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 80);

/// nginx's configuration for one pod: its files, and the command line that runs it.
pub struct App {
    dir: PathBuf,
    conf: PathBuf,
    /// The access log.
    pub access_log: PathBuf,
    /// While this file exists, `GET /healthz` answers 200; otherwise 503.
    pub health_file: PathBuf,
}

impl App {
    /// Writes the config and a page naming `pod` under `dir`, nginx listening on `listen`.
    pub fn configure(pod: &str, dir: &Path, listen: SocketAddrV4) -> Result<App, HarnessError> {
        let www = dir.join("www");
        let tmp = dir.join("nginx-tmp");
        for d in [&www, &tmp] {
            std::fs::create_dir_all(d).map_err(|e| HarnessError::io("create", d, e))?;
        }
        let page = www.join("index.html");
        std::fs::write(&page, page_html(pod)).map_err(|e| HarnessError::io("write", &page, e))?;
        let health_file = dir.join("healthy");
        std::fs::write(&health_file, "ok\n")
            .map_err(|e| HarnessError::io("write", &health_file, e))?;
        let conf = dir.join("nginx.conf");
        let access_log = dir.join("access.log");
        std::fs::write(&conf, config(dir, listen, &access_log))
            .map_err(|e| HarnessError::io("write", &conf, e))?;
        Ok(App {
            dir: dir.to_path_buf(),
            conf,
            access_log,
            health_file,
        })
    }

    /// nginx's arguments: this configuration, in the foreground (`daemon off`), so the
    /// master stays the process that was started.
    pub fn argv(&self) -> Vec<String> {
        vec![
            "-p".into(),
            self.dir.display().to_string(),
            "-c".into(),
            self.conf.display().to_string(),
            "-g".into(),
            "daemon off;".into(),
        ]
    }

    /// Makes `GET /healthz` answer 200 (`true`) or 503 (`false`) from now on; every other
    /// path keeps answering as before.
    pub fn set_healthy(&self, healthy: bool) -> Result<(), HarnessError> {
        let path = &self.health_file;
        let done = if healthy {
            std::fs::write(path, "ok\n")
        } else {
            std::fs::remove_file(path)
        };
        done.map_err(|e| HarnessError::io(if healthy { "write" } else { "remove" }, path, e))
    }
}

/// The page: the tutorial's "which pod am I talking to", machine-readable in `id="pod"`.
pub fn page_html(pod: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html><head><title>Welcome to nginx!</title></head>\n<body>\n\
         <h1>Welcome to nginx!</h1>\n<p>Served by pod <b id=\"pod\">{pod}</b>.</p>\n</body></html>\n"
    )
}

/// The pod a page names, if it is one of ours.
pub fn pod_of_page(body: &str) -> Option<&str> {
    let start = body.find("id=\"pod\">")? + "id=\"pod\">".len();
    let len = body[start..].find('<')?;
    Some(&body[start..start + len])
}

fn config(dir: &Path, listen: SocketAddrV4, access_log: &Path) -> String {
    let d = dir.display();
    let log = access_log.display();
    // `user root`: the pod directory is private to root; `daemon off`: nginx stays our
    // child, so its exit is seen at once.
    format!(
        r#"user root root;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
  log_format understudy '{LOG_FORMAT}';
  client_body_temp_path {d}/nginx-tmp/body;
  proxy_temp_path {d}/nginx-tmp/proxy;
  fastcgi_temp_path {d}/nginx-tmp/fastcgi;
  uwsgi_temp_path {d}/nginx-tmp/uwsgi;
  scgi_temp_path {d}/nginx-tmp/scgi;
  types {{ text/html html; }}
  keepalive_requests 100000;
  server {{
    listen {listen};
    access_log {log} understudy;
    root {d}/www;
    index index.html;
    # The health check `--upstream-health /healthz` asks: 200 while the file exists.
    location = /healthz {{
      access_log off;
      if (!-f {d}/healthy) {{ return 503 "unhealthy\n"; }}
      return 200 "ok\n";
    }}
  }}
}}
"#
    )
}

/// One access log line.
#[derive(Clone, Debug, PartialEq)]
pub struct AccessEntry {
    /// When nginx wrote the line (Unix seconds, ms resolution).
    pub logged: f64,
    /// How long nginx spent on the request, seconds (ms resolution).
    pub request_time: f64,
    /// The status sent.
    pub status: u16,
    /// The fencing token: leader identity, if the request came through a leading sidecar.
    pub leader: Option<String>,
    /// The fencing token: epoch.
    pub epoch: Option<u64>,
    /// The fencing token: the Lease (slot) the epoch counts in.
    pub lease: Option<String>,
    /// Method and URI.
    pub request: String,
}

impl AccessEntry {
    /// When nginx received the request (Unix seconds).
    pub fn received(&self) -> f64 {
        self.logged - self.request_time
    }

    /// Parses one line of [`LOG_FORMAT`]; `None` for anything else.
    pub fn parse(line: &str) -> Option<AccessEntry> {
        let mut f = line.split('\t');
        let logged = f.next()?.parse().ok()?;
        let request_time = f.next()?.parse().ok()?;
        let status = f.next()?.parse().ok()?;
        let leader = f.next().filter(|v| *v != "-").map(String::from);
        let epoch = f.next()?.parse().ok();
        let lease = f.next().filter(|v| *v != "-").map(String::from);
        let request = f.next()?.to_string();
        Some(AccessEntry {
            logged,
            request_time,
            status,
            leader,
            epoch,
            lease,
            request,
        })
    }
}

/// Reads an access log; lines that do not parse are skipped (a torn last line).
pub fn read_access_log(path: &Path) -> Result<Vec<AccessEntry>, HarnessError> {
    let text = std::fs::read_to_string(path).map_err(|e| HarnessError::io("read", path, e))?;
    Ok(text.lines().filter_map(AccessEntry::parse).collect())
}

#[cfg(test)]
mod tests;
