//! Notification peers on 127.0.0.1, run in the test process: an HTTP server that records every
//! request (answering 200, failing first, or never answering, by path; or refusing everything, as
//! an instance metadata service with IMDS turned off does) and an SMTP sink that records every
//! mail and the credentials it was given.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;

/// One request the HTTP server received.
#[derive(Debug, Clone)]
pub struct Request {
    /// Request path.
    pub path: String,
    /// Headers, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: String,
}

impl Request {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).expect("a JSON body")
    }
}

/// An HTTP server: paths starting `/hang` never get an answer, paths starting `/flaky` get a
/// 503 the first time, everything else a 200 (or, from [`Http::refusing`], a 403).
pub struct Http {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    requests: Arc<Mutex<Vec<Request>>>,
}

impl Http {
    /// Starts it on a free port.
    pub fn start() -> Http {
        Http::serve(false)
    }

    /// One that answers every request `403 Forbidden`, as EC2's instance metadata service does
    /// when IMDS is turned off for the instance.
    pub fn refusing() -> Http {
        Http::serve(true)
    }

    fn serve(refuse: bool) -> Http {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let seen = seen.clone();
                std::thread::spawn(move || serve_http(stream, &seen, refuse));
            }
        });
        Http { base, requests }
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }

    /// Requests to `path`.
    pub fn to(&self, path: &str) -> Vec<Request> {
        self.requests()
            .into_iter()
            .filter(|r| r.path == path)
            .collect()
    }
}

fn serve_http(stream: TcpStream, seen: &Mutex<Vec<Request>>, refuse: bool) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).unwrap();
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((n, v)) = h.split_once(':') {
            headers.push((n.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let len: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .map_or(0, |(_, v)| v.parse().unwrap());
    let mut body = vec![0; len];
    reader.read_exact(&mut body).unwrap();
    let first_to_path = {
        let mut all = seen.lock().unwrap();
        let first = !all.iter().any(|r| r.path == path);
        all.push(Request {
            path: path.clone(),
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        });
        first
    };
    if path.starts_with("/hang") {
        std::thread::sleep(Duration::from_secs(600));
        return;
    }
    let status = if refuse {
        "403 Forbidden"
    } else if path.starts_with("/flaky") && first_to_path {
        "503 Service Unavailable"
    } else {
        "200 OK"
    };
    let mut stream = stream;
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok"
    );
}

/// One mail the SMTP sink received.
#[derive(Debug, Clone, Default)]
pub struct Mail {
    /// `user\0password` from AUTH PLAIN, if the client logged in.
    pub login: Option<(String, String)>,
    /// MAIL FROM.
    pub from: String,
    /// RCPT TO, each.
    pub to: Vec<String>,
    /// The message (headers and body).
    pub data: String,
}

/// An SMTP sink offering AUTH PLAIN, without TLS.
pub struct Smtp {
    /// Its port.
    pub port: u16,
    mails: Arc<Mutex<Vec<Mail>>>,
}

impl Smtp {
    /// Starts it on a free port.
    pub fn start() -> Smtp {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let mails = Arc::new(Mutex::new(Vec::new()));
        let seen = mails.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let seen = seen.clone();
                std::thread::spawn(move || serve_smtp(stream, &seen));
            }
        });
        Smtp { port, mails }
    }

    /// Every mail so far.
    pub fn mails(&self) -> Vec<Mail> {
        self.mails.lock().unwrap().clone()
    }
}

fn serve_smtp(stream: TcpStream, seen: &Mutex<Vec<Mail>>) {
    let mut out = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    let mut say = |text: &str| {
        let _ = out.write_all(format!("{text}\r\n").as_bytes());
    };
    say("220 sink ESMTP");
    let mut mail = Mail::default();
    let mut line = String::new();
    let plain = |b64: &str| {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .unwrap();
        let parts: Vec<String> = raw
            .split(|b| *b == 0)
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .collect();
        (parts[1].clone(), parts[2].clone())
    };
    loop {
        line.clear();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let cmd = line.trim_end().to_string();
        let upper = cmd.to_ascii_uppercase();
        if upper.starts_with("EHLO") {
            say("250-sink");
            say("250-AUTH PLAIN");
            say("250 8BITMIME");
        } else if upper.starts_with("HELO") {
            say("250 sink");
        } else if upper.starts_with("AUTH PLAIN") {
            let arg = cmd[10..].trim();
            let b64 = if arg.is_empty() {
                say("334 ");
                let mut l = String::new();
                reader.read_line(&mut l).unwrap();
                l
            } else {
                arg.to_string()
            };
            mail.login = Some(plain(&b64));
            say("235 2.7.0 Authentication successful");
        } else if upper.starts_with("MAIL FROM:") {
            mail.from = cmd[10..].trim().to_string();
            say("250 OK");
        } else if upper.starts_with("RCPT TO:") {
            mail.to.push(cmd[8..].trim().to_string());
            say("250 OK");
        } else if upper == "DATA" {
            say("354 go on");
            let mut data = String::new();
            loop {
                let mut l = String::new();
                if reader.read_line(&mut l).unwrap_or(0) == 0 {
                    return;
                }
                if l == ".\r\n" {
                    break;
                }
                data.push_str(&l);
            }
            mail.data = data;
            seen.lock().unwrap().push(mail.clone());
            say("250 OK queued");
        } else if upper == "QUIT" {
            say("221 bye");
            return;
        } else {
            say("250 OK");
        }
    }
}
