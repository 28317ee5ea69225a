//! The web UI: server-rendered HTML pages with one small script and one style sheet, both
//! embedded in the binary (sensors are often offline: no CDN, no build step).
//!
//! | route | page |
//! |---|---|
//! | the prefix itself | query form |
//! | `ui/jobs` | jobs table, refreshed from `ui/jobs.json` every second |
//! | `ui/job/<id>` | one job: state, per-sensor progress and events (polling `status/<id>`), "Get PCAP", curl and Wireshark command lines |
//! | `ui/sensors` | each sensor's health and oldest data, spool free space |
//! | `ui/app.js`, `ui/style.css` | the assets |
//!
//! Invariants: every link is relative (each page knows its depth below the prefix and
//! prefixes links with `root`), so the UI works under any prefix and behind any proxy; every
//! value from a request, a job or the configuration is HTML-escaped; there is no inline
//! script or style, so the CSP ([`super::front::CSP`]) can forbid them. The form posts JSON
//! to the API's own `q` route, so the UI has no second query parser: a field error comes back
//! as the API's `{"clause": ...}` and the script shows it next to that field.

use std::sync::Arc;

use http::{header, Response, StatusCode};

use super::views::{self, JobView, StatusView};
use super::{full, json, AppState, Body};
use crate::jobs::State;
use crate::query::JobId;

const APP_JS: &str = include_str!("assets/app.js");
const STYLE_CSS: &str = include_str!("assets/style.css");

/// Escapes text for HTML element content and quoted attribute values.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

fn page(root: &str, title: &str, user: Option<&str>, main: &str) -> Response<Body> {
    let who = user
        .map(|u| format!("<span class=\"user\">{}</span>", esc(u)))
        .unwrap_or_default();
    let body = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{t} · Docket</title><link rel=\"stylesheet\" href=\"{root}ui/style.css\">\
         <script src=\"{root}ui/app.js\" defer></script></head>\n\
         <body data-root=\"{root}\"><header><a class=\"brand\" href=\"{root}\">Docket</a>\
         <nav><a href=\"{root}\">Query</a> <a href=\"{root}ui/jobs\">Jobs</a> \
         <a href=\"{root}ui/sensors\">Sensors</a></nav>{who}</header>\n<main>\n<h1>{t}</h1>\n{main}\n</main></body></html>\n",
        t = esc(title),
    );
    Response::builder()
        .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
        .header(header::CACHE_CONTROL, "no-store")
        .body(full(body))
        .expect("valid response")
}

fn not_found(root: &str, user: Option<&str>, what: &str) -> Response<Body> {
    let mut r = page(root, "Not found", user, &format!("<p>{}</p>", esc(what)));
    *r.status_mut() = StatusCode::NOT_FOUND;
    r
}

fn asset(body: &'static str, ctype: &'static str) -> Response<Body> {
    Response::builder()
        .header(header::CONTENT_TYPE, ctype)
        .header(header::CACHE_CONTROL, "no-cache")
        .body(full(body))
        .expect("valid response")
}

/// Routes a UI request: `segs` are the path segments under the prefix.
pub async fn handle(
    state: &Arc<AppState>,
    segs: &[&str],
    user: Option<&str>,
    query: Option<&str>,
) -> Response<Body> {
    match segs {
        [] => query_page(state, user).await,
        ["ui", "app.js"] => asset(APP_JS, "text/javascript; charset=utf-8"),
        ["ui", "style.css"] => asset(STYLE_CSS, "text/css; charset=utf-8"),
        ["ui", "jobs"] => jobs_page(state, user, query),
        ["ui", "jobs.json"] => json(StatusCode::OK, &jobs_rows(state, user, query)),
        ["ui", "job", id] => match id.parse::<JobId>() {
            Ok(id) => job_page(state, &id, user),
            Err(_) => not_found("../../", user, "not a job id"),
        },
        ["ui", "sensors"] => sensors_page(state, user).await,
        _ => not_found(
            &"../".repeat(segs.len().saturating_sub(1)),
            user,
            "no such page",
        ),
    }
}

/// A field with its error slot (filled by the script from the API's `clause`).
fn field(name: &str, label: &str, input: &str, hint: &str) -> String {
    format!(
        "<div class=\"field\" id=\"field-{name}\"><label for=\"f-{name}\">{label}</label>{input}\
         <span class=\"hint\">{hint}</span><span class=\"err\" id=\"err-{name}\" role=\"alert\"></span></div>\n"
    )
}

fn text_input(name: &str, placeholder: &str) -> String {
    format!("<input type=\"text\" id=\"f-{name}\" name=\"{name}\" placeholder=\"{placeholder}\" autocomplete=\"off\">")
}

async fn query_page(state: &AppState, user: Option<&str>) -> Response<Body> {
    let mut sensors = String::new();
    // Each upstream's data availability (sensors asked concurrently, briefly).
    let st = views::stats(state, &[]).await;
    for (name, h) in &st.upstreams.0 {
        let oldest = h.oldest_timestamp.as_deref().unwrap_or("no data yet");
        sensors.push_str(&format!(
            "<label class=\"check\"><input type=\"checkbox\" name=\"sensor\" value=\"{n}\"> {n} \
             <span class=\"hint\">oldest data: {o}</span></label>\n",
            n = esc(name),
            o = esc(oldest)
        ));
    }
    let units = "<option value=\"m\">minutes</option><option value=\"h\">hours</option>\
                 <option value=\"d\">days</option>";
    let mut f = String::new();
    f.push_str("<form id=\"query\" method=\"post\" action=\"q\" novalidate>\n");
    f.push_str(
        "<fieldset><legend>Time</legend>\
         <label class=\"check\"><input type=\"radio\" name=\"timemode\" value=\"relative\" id=\"mode-relative\" checked> relative</label> \
         <label class=\"check\"><input type=\"radio\" name=\"timemode\" value=\"absolute\" id=\"mode-absolute\"> absolute</label>\n",
    );
    f.push_str(&field(
        "after-ago",
        "Last",
        &format!(
            "<input type=\"number\" min=\"0\" id=\"f-after-ago\" name=\"after-ago\" value=\"20\">\
             <select id=\"f-after-ago-unit\" name=\"after-ago-unit\">{units}</select>"
        ),
        "up to now (relative)",
    ));
    f.push_str(&field(
        "after",
        "After",
        "<input type=\"datetime-local\" step=\"1\" id=\"f-after\" name=\"after\">",
        "absolute, your browser's time zone",
    ));
    f.push_str(&field(
        "before",
        "Before",
        "<input type=\"datetime-local\" step=\"1\" id=\"f-before\" name=\"before\">",
        "absolute (empty: now)",
    ));
    f.push_str("</fieldset>\n<fieldset><legend>Match</legend>\n");
    f.push_str(&field(
        "host",
        "Hosts",
        &text_input("host", "10.0.0.1 2001:db8::1"),
        "several: separate with spaces or commas",
    ));
    f.push_str(&field(
        "net",
        "Networks",
        &text_input("net", "10.0.0.0/8"),
        "address/prefix, several allowed",
    ));
    f.push_str(&field(
        "port",
        "Ports",
        &text_input("port", "443 53"),
        "several allowed",
    ));
    f.push_str(&field(
        "proto-name",
        "Protocol",
        "<select id=\"f-proto-name\" name=\"proto-name\"><option value=\"\">any</option>\
         <option>tcp</option><option>udp</option><option>icmp</option></select>",
        "",
    ));
    f.push_str(&field(
        "bpf",
        "BPF",
        &text_input("bpf", "tcp[tcpflags] & tcp-syn != 0"),
        "optional tcpdump expression, AND-ed with the rest",
    ));
    f.push_str("</fieldset>\n<fieldset><legend>Sensors</legend>\n");
    f.push_str(&format!(
        "<div class=\"field\" id=\"field-sensor\">{sensors}<span class=\"hint\">none ticked: all</span>\
         <span class=\"err\" id=\"err-sensor\" role=\"alert\"></span></div>\n"
    ));
    f.push_str("</fieldset>\n<fieldset><legend>Limits</legend>\n");
    f.push_str(&field(
        "limit-packets",
        "Packets",
        &text_input("limit-packets", "100000"),
        "",
    ));
    f.push_str(&field(
        "limit-bytes",
        "Bytes",
        &text_input("limit-bytes", "500MB"),
        "",
    ));
    f.push_str(&field(
        "format",
        "Format",
        "<select id=\"f-format\" name=\"format\"><option value=\"\">pcap (pcapng if needed)</option>\
         <option value=\"pcapng\">pcapng</option>\
         <option value=\"pcap\">pcap only (refused if link types differ)</option></select>",
        "",
    ));
    f.push_str(&field(
        "ignore-weight",
        "Size check",
        "<label class=\"check\"><input type=\"checkbox\" id=\"f-ignore-weight\" \
         name=\"ignore-weight\"> fetch even if the estimate is over the limit</label>",
        "",
    ));
    f.push_str(
        "</fieldset>\n<p class=\"hint\" id=\"estimate\" aria-live=\"polite\"></p>\n\
         <p class=\"err\" id=\"err-form\" role=\"alert\"></p>\n\
         <button type=\"submit\" id=\"submit\">Submit</button> <button type=\"reset\">Reset</button>\n</form>\n",
    );
    page("./", "Query", user, &f)
}

/// The jobs page's page size.
const JOBS_PAGE: usize = 200;

/// The jobs table's rows, newest first: a page of [`JOBS_PAGE`], after job `before`.
fn jobs_rows(state: &AppState, user: Option<&str>, query: Option<&str>) -> Vec<JobView> {
    let mut l = views::Listing::parse(query).unwrap_or_default();
    l.limit = Some(l.limit.unwrap_or(JOBS_PAGE).min(JOBS_PAGE));
    l.apply(state, &state.jobs_for(user))
}

/// One row of the jobs table (the script renders the same from `ui/jobs.json`): the state
/// highlighted (Partial, Failed, empty answers), a running job's progress against its
/// estimate, the query clamped to three lines (all of it on hover).
fn job_row(j: &JobView) -> String {
    let id = &j.id;
    let get = if j.capture {
        format!("<a class=\"button\" href=\"../{id}/merged.pcap\">Get PCAP</a>")
    } else {
        String::new()
    };
    let empty = j.state.is_final() && j.packets == 0;
    let progress = match (&j.estimate, j.state) {
        (Some(e), State::Running | State::Queued) if e.of.bytes > 0 => format!(
            " <progress max=\"{}\" value=\"{}\"></progress>",
            e.of.bytes,
            j.bytes.min(e.of.bytes)
        ),
        _ => String::new(),
    };
    format!(
        "<tr class=\"state-{st}{empty}\"><td>{t}</td><td><a href=\"job/{id}\">{short}</a></td><td>{u}</td>\
         <td class=\"q\"><code title=\"{q}\">{q}</code></td><td class=\"state\">{st}{none}{progress}</td>\
         <td>{b}</td><td>{get}</td></tr>\n",
        t = esc(&j.time),
        short = esc(id.get(..8).unwrap_or(id)),
        u = esc(j.user.as_deref().unwrap_or("")),
        q = esc(&j.query),
        st = j.state.as_str(),
        empty = if empty { " empty" } else { "" },
        none = if empty { " (no packets)" } else { "" },
        b = j.bytes,
    )
}

fn jobs_page(state: &AppState, user: Option<&str>, query: Option<&str>) -> Response<Body> {
    let mut rows = String::new();
    let jobs = jobs_rows(state, user, query);
    for j in &jobs {
        rows.push_str(&job_row(j));
    }
    let older = match jobs.last() {
        Some(last) if jobs.len() == JOBS_PAGE => format!(
            "<p><a id=\"older\" href=\"jobs?before={}\">Older jobs</a></p>",
            esc(&last.id)
        ),
        _ => String::new(),
    };
    let main = format!(
        "<table id=\"jobs\"><thead><tr><th>Time</th><th>Job</th><th>User</th><th>Query</th>\
         <th>State</th><th>Bytes</th><th></th></tr></thead><tbody>{rows}</tbody></table>{older}"
    );
    page("../", "Jobs", user, &main)
}

fn job_page(state: &AppState, id: &JobId, user: Option<&str>) -> Response<Body> {
    let Some(job) = state.registry.get(id).filter(|j| state.may_see(user, j)) else {
        return not_found("../../", user, "no such job (it may have expired)");
    };
    let j = JobView::of(state, &job);
    let s = StatusView::of(&job);
    let mut ups = String::new();
    for u in &s.upstreams {
        ups.push_str(&format!(
            "<tr><td>{}</td><td>{:?}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&u.name),
            u.state,
            u.packets,
            u.bytes,
            esc(&u
                .error
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default())
        ));
    }
    let mut evs = String::new();
    for e in &s.events {
        evs.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{:?}</td></tr>",
            esc(&e.datetime),
            esc(&e.name),
            esc(&e.msg),
            e.state
        ));
    }
    let pcap_rel = format!("q/{}/pcap", job.query.to_path());
    let main = format!(
        "<section id=\"job\" data-id=\"{id}\" data-pcap=\"{pcap}\" data-user=\"{u}\" data-estimate=\"{est}\">\n\
         <p>Query: <code>{q}</code></p>\n\
         <p>State: <strong id=\"state\">{st:?}</strong> · <span id=\"packets\">{pk}</span> packets, \
         <span id=\"bytes\">{by}</span> bytes <progress id=\"progress\" hidden></progress> \
         <span id=\"rate\" class=\"hint\"></span> <span id=\"eta\" class=\"hint\"></span></p>\n\
         <p><a class=\"button\" id=\"get-pcap\" href=\"../../{id}/merged.pcap\">Get PCAP</a> \
         <span class=\"hint\">streams while the job runs</span></p>\n\
         <h2>Command line</h2>\n\
         <p>curl: <code id=\"curl\" class=\"copy\">curl -N {ua}-o {id}.pcap '{rel}'</code> \
         <button type=\"button\" class=\"copy-button\" data-target=\"curl\">Copy</button></p>\n\
         <p>Wireshark: <code id=\"wireshark\" class=\"copy\">curl -fsSN {ua}'{rel}' | wireshark -k -i -</code> \
         <button type=\"button\" class=\"copy-button\" data-target=\"wireshark\">Copy</button></p>\n\
         <h2>Sensors</h2>\n<table id=\"upstreams\"><thead><tr><th>Sensor</th><th>State</th><th>Packets</th>\
         <th>Bytes</th><th>Error</th></tr></thead><tbody>{ups}</tbody></table>\n\
         <h2>Events</h2>\n<table id=\"events\"><thead><tr><th>Time</th><th>Name</th><th>Message</th>\
         <th>State</th></tr></thead><tbody>{evs}</tbody></table>\n</section>",
        id = id,
        pcap = esc(&pcap_rel),
        u = esc(user.unwrap_or("")),
        est = j
            .estimate
            .as_ref()
            .map(|e| e.of.bytes.to_string())
            .unwrap_or_default(),
        q = esc(&j.query),
        st = s.state,
        pk = s.packets,
        by = s.bytes,
        ua = user
            .map(|u| format!("-u '{}' ", esc(&u.replace('\'', "'\\''"))))
            .unwrap_or_default(),
        // Made absolute by the script from the page's own address.
        rel = esc(&format!("{}{pcap_rel}", state.config.prefix)),
    );
    page(
        "../../",
        &format!("Job {}", &id.to_string()[..8]),
        user,
        &main,
    )
}

async fn sensors_page(state: &AppState, user: Option<&str>) -> Response<Body> {
    let st = views::stats(state, &[]).await;
    let mut rows = String::new();
    for (name, h) in &st.upstreams.0 {
        // Why a sensor is down, and a directory's unreadable files, in the row itself.
        let why = match (&h.error, &h.files) {
            (Some(e), _) => e.clone(),
            (None, Some(f)) if !f.unreadable.is_empty() => {
                format!("{} unreadable file(s)", f.unreadable.len())
            }
            _ => String::new(),
        };
        rows.push_str(&format!(
            "<tr class=\"{}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"why\">{}</td></tr>",
            if h.up { "up" } else { "down" },
            esc(name),
            esc(h.kind),
            if h.up { "up" } else { "down" },
            esc(h.oldest_timestamp.as_deref().unwrap_or("no data yet")),
            esc(&why),
        ));
    }
    let spool = state.registry.spool();
    let free = spool.free_bytes();
    let inodes = spool.free_inodes().map_or_else(
        || "no inode limit".to_owned(),
        |n| format!("{n} free inodes"),
    );
    let main = format!(
        "<table id=\"sensors\"><thead><tr><th>Sensor</th><th>Kind</th><th>Health</th><th>Oldest data</th><th>Why</th></tr></thead>\
         <tbody>{rows}</tbody></table>\n<h2>Spool</h2>\n<p>Free space: <span id=\"spool-free\">{free}</span> bytes \
         ({gib:.1} GiB), {inodes}; jobs known: {n}.</p>",
        gib = free as f64 / (1u64 << 30) as f64,
        n = state.registry.all().len(),
    );
    page("../", "Sensors", user, &main)
}
