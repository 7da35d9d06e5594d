//! The text of a chat robot's message (DingTalk, WeCom, Feishu) carrying one notification or,
//! past the robot's budget, several as one digest: most urgent first, each group's labels
//! named, cut only at the service's size limit — the digest carries what fits and says how
//! many follow; one notification too big alone is cut, saying by how much.

use crate::alert::Alert;
use crate::dispatch::{Notification, render};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Markdown,
    Plain,
}

/// The title and the text of a message carrying `shown` (and saying that `more` follow).
pub fn text(shown: &[&Notification], more: usize, style: Style) -> (String, String) {
    let firing: usize = shown.iter().map(|n| n.firing()).sum();
    let (bold, item) = match style {
        Style::Markdown => ("**", "- "),
        Style::Plain => ("", "• "),
    };
    let mut lines = Vec::new();
    let title = if let [one] = shown {
        let name = one.alerts.first().map_or("", Alert::name);
        format!("[{}:{}] {name}", one.status().to_uppercase(), one.alerts.len())
    } else {
        format!("[DIGEST] {} notifications, {firing} firing", shown.len())
    };
    lines.push(format!("{bold}{title}{bold}"));
    if shown.len() > 1 {
        lines
            .push("Merged into one message: the robot's per-minute budget was reached.".to_owned());
    }
    for n in shown {
        lines.push(format!(
            "{bold}[{}] {}{bold}",
            n.status().to_uppercase(),
            render(&n.group_labels)
        ));
        for a in &n.alerts {
            let state = if a.is_firing() { "FIRING" } else { "RESOLVED" };
            let severity = a.labels.get("severity").map_or(String::new(), |s| format!(" ({s})"));
            lines.push(format!("{item}[{state}] {}{severity}: {}", a.name(), a.summary()));
        }
    }
    if more > 0 {
        lines.push(format!("{more} more notifications follow in the next message."));
    }
    (title, lines.join("\n\n"))
}

/// The message built by `build` for as many of `notifications` as keep `size` within `max`,
/// most urgent first, and how many that is. One notification is always carried: whether it
/// fits is for the caller to check (and [`cut`]).
pub fn fit<T>(
    notifications: &[Notification],
    max: usize,
    build: impl Fn(&[&Notification], usize) -> T,
    size: impl Fn(&T) -> usize,
) -> (T, usize) {
    let mut order: Vec<&Notification> = notifications.iter().collect();
    order.sort_by_key(|n| (n.rank(), n.created_ms));
    let mut carried = order.len();
    loop {
        let message = build(&order[..carried], order.len() - carried);
        if carried == 1 || size(&message) <= max {
            return (message, carried);
        }
        carried -= 1;
    }
}

/// `text` shortened by `over` bytes and a note, at a character boundary.
pub fn cut(text: &str, over: usize) -> String {
    let note_room = 100;
    let mut keep = text.len().saturating_sub(over + note_room);
    while !text.is_char_boundary(keep) {
        keep -= 1;
    }
    format!(
        "{}\n\n… cut: {} more bytes over the service's size limit",
        &text[..keep],
        text.len() - keep
    )
}
