//! Joining the lines of one event — a Java, Python or Go stack trace — into one record.
//!
//! Works per file and stream, on lines after CRI or Docker parts were merged. A line either
//! starts a record or continues the one being built, by a start pattern or a continuation
//! pattern (the presets are continuation patterns). A record is complete when the next one
//! starts, when it reaches the line or byte cap, or when no line came for the timeout. Until
//! then, its first line's offset holds the file's checkpoint back, so a crash re-reads the
//! whole event and the collector deduplicates it by the first line's id.

use std::time::{Duration, Instant};

use regex::Regex;
use sluice_proto::LogRecord;

/// Java: `at` frames, `... N more`, `Caused by:`, `Suppressed:`, and the exception's
/// class line (`java.lang.IllegalStateException: …`) that logback prints after the message.
const JAVA: &str = r"^(?:[\t ]+at |[\t ]+\.\.\. \d+ |Caused by: |[\t ]+Suppressed: |[a-zA-Z_$][\w$]*(?:\.[a-zA-Z_$][\w$]*)+(?:Exception|Error|Throwable)(?::|$))";
/// Python: the traceback header, indented frame and code lines, chained-exception notes and
/// the final `SomeError: …` line.
const PYTHON: &str = r"^(?:Traceback \(most recent call last\):|[\t ]+|During handling of the above exception|The above exception was the direct cause|[A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt|Warning)(?::|$))";
/// Go: a panic's blank line, `goroutine N [state]:`, function lines `pkg.Func(…)`, tab-indented
/// file lines and `created by`.
const GO: &str = r"^(?:$|goroutine \d+ \[|[\w./*()\[\]]+\(.*\)$|\t|created by |\[signal )";

/// How lines are grouped.
#[derive(Debug, Clone)]
pub enum Rule {
    /// A line matching the pattern starts a record; any other continues it.
    Start(Regex),
    /// A line matching the pattern continues the record; any other starts one.
    Continue(Regex),
}

#[derive(Debug, Clone)]
pub struct MultilineConfig {
    pub rule: Rule,
    pub timeout: Duration,
    pub max_lines: usize,
    pub max_bytes: usize,
}

impl MultilineConfig {
    /// The continuation pattern of a built-in preset.
    pub fn preset(name: &str) -> Option<Rule> {
        let pattern = match name {
            "java" => JAVA,
            "python" => PYTHON,
            "go" => GO,
            _ => return None,
        };
        Some(Rule::Continue(Regex::new(pattern).expect("presets are valid")))
    }

    fn starts(&self, line: &str) -> bool {
        match &self.rule {
            Rule::Start(p) => p.is_match(line),
            Rule::Continue(p) => !p.is_match(line),
        }
    }
}

/// A record being built, with where its last line ended.
#[derive(Debug)]
struct Pending {
    record: LogRecord,
    end: u64,
    lines: usize,
    last_line_at: Instant,
}

/// The record being built per stream of one file (stdout and stderr interleave in CRI).
#[derive(Debug, Default)]
pub struct Joiner {
    open: [Option<Pending>; 3],
}

impl Joiner {
    /// Adds a one-line record spanning to `end`; returns the records it completes, each with
    /// the end of its last line.
    pub fn push(
        &mut self,
        config: &MultilineConfig,
        record: LogRecord,
        end: u64,
        now: Instant,
    ) -> Vec<(LogRecord, u64)> {
        let slot = &mut self.open[usize::try_from(record.stream).unwrap_or(0).min(2)];
        let mut done = Vec::new();
        if let Some(pending) = slot {
            let fits = pending.lines < config.max_lines
                && pending.record.message.len() + 1 + record.message.len() <= config.max_bytes;
            if fits && !config.starts(&record.message) {
                pending.record.message.push('\n');
                pending.record.message.push_str(&record.message);
                // The event's time is its first line's: a continuation line's lack of one
                // says nothing of the event.
                pending.record.flags |= record.flags & !sluice_proto::flags::TIME_NOT_FOUND;
                pending.end = end;
                pending.lines += 1;
                pending.last_line_at = now;
                return done;
            }
            let finished = slot.take().expect("checked above");
            done.push((finished.record, finished.end));
        }
        *slot = Some(Pending { record, end, lines: 1, last_line_at: now });
        done
    }

    /// Completes the records that waited `timeout` for another line, or all of them when
    /// `all` (the file is closed).
    pub fn flush(
        &mut self,
        config: &MultilineConfig,
        now: Instant,
        all: bool,
    ) -> Vec<(LogRecord, u64)> {
        let mut done: Vec<(LogRecord, u64)> = Vec::new();
        for slot in &mut self.open {
            if slot
                .as_ref()
                .is_some_and(|p| all || now.duration_since(p.last_line_at) >= config.timeout)
            {
                let pending = slot.take().expect("checked above");
                done.push((pending.record, pending.end));
            }
        }
        done.sort_by_key(|(r, _)| r.offset);
        done
    }

    /// Offset of the first line of a record still being built: the checkpoint may not pass it.
    pub fn pending_start(&self) -> Option<u64> {
        self.open.iter().flatten().map(|p| p.record.offset).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(rule: Rule) -> MultilineConfig {
        MultilineConfig { rule, timeout: Duration::from_millis(100), max_lines: 5, max_bytes: 1000 }
    }

    fn line(offset: u64, text: &str) -> LogRecord {
        LogRecord { offset, message: text.to_owned(), ..LogRecord::default() }
    }

    /// Feeds lines (each 10 bytes long in the file) and returns the messages of completed
    /// records, then those flushed at the end.
    fn join(config: &MultilineConfig, lines: &[&str]) -> Vec<String> {
        let mut joiner = Joiner::default();
        let now = Instant::now();
        let mut out = Vec::new();
        for (i, text) in lines.iter().enumerate() {
            let done = joiner.push(config, line(i as u64 * 10, text), i as u64 * 10 + 10, now);
            out.extend(done.into_iter().map(|(r, _)| r.message));
        }
        out.extend(joiner.flush(config, now, true).into_iter().map(|(r, _)| r.message));
        out
    }

    #[test]
    fn java_stack_traces_join_their_message() {
        let java = config(MultilineConfig::preset("java").unwrap());
        let lines = [
            "2026-11-23 10:00:00.425 ERROR Scheduler - 订单创建失败",
            "java.lang.IllegalStateException: 用户信息为空",
            "\tat com.zto.pay.PayService.pay(PayService.java:381)",
            "Caused by: java.sql.SQLException: timeout",
            "\t... 12 more",
            "2026-11-23 10:00:00.428 INFO next",
        ];
        let out = join(&java, &lines);
        assert_eq!(out, [lines[..5].join("\n"), lines[5].to_owned()]);
    }

    #[test]
    fn python_and_go_presets() {
        let python = config(MultilineConfig::preset("python").unwrap());
        let tb = [
            "ERROR:root:payment failed",
            "Traceback (most recent call last):",
            "  File \"pay.py\", line 3, in <module>",
            "    1 / 0",
            "ZeroDivisionError: division by zero",
            "INFO:root:next",
        ];
        assert_eq!(join(&python, &tb), [tb[..5].join("\n"), tb[5].to_owned()]);
        let go = config(MultilineConfig::preset("go").unwrap());
        let panic = [
            "panic: runtime error: index out of range [3] with length 3",
            "",
            "goroutine 1 [running]:",
            "main.main()",
            "\t/app/main.go:12 +0x1d",
            "exit status 2",
        ];
        assert_eq!(join(&go, &panic), [panic[..5].join("\n"), panic[5].to_owned()]);
        assert!(MultilineConfig::preset("cobol").is_none());
    }

    #[test]
    fn start_pattern_caps_and_offsets() {
        let start = config(Rule::Start(Regex::new(r"^\d{4}-").unwrap()));
        let lines = ["2026 a", "x", "2026-1 b", "y1", "y2", "y3", "y4", "y5", "y6"];
        let out = join(&start, &lines);
        // The first line matches no start pattern but nothing precedes it; the cap of 5
        // lines splits the long event without losing a line.
        assert_eq!(out, ["2026 a\nx", "2026-1 b\ny1\ny2\ny3\ny4", "y5\ny6"]);

        let mut joiner = Joiner::default();
        let now = Instant::now();
        assert!(joiner.push(&start, line(0, "2026-1 a"), 10, now).is_empty());
        assert!(joiner.push(&start, line(10, "more"), 25, now).is_empty());
        assert_eq!(joiner.pending_start(), Some(0));
        let done = joiner.push(&start, line(25, "2026-2 b"), 40, now);
        assert_eq!(done.len(), 1);
        assert_eq!(
            (done[0].0.offset, done[0].1),
            (0, 25),
            "offset of the first line, end of the last"
        );
        assert_eq!(joiner.pending_start(), Some(25));
        assert!(joiner.flush(&start, now, false).is_empty(), "not timed out yet");
        let later = now + Duration::from_millis(150);
        let flushed = joiner.flush(&start, later, false);
        assert_eq!((flushed[0].0.offset, flushed[0].1), (25, 40));
        assert_eq!(joiner.pending_start(), None);
    }

    #[test]
    fn streams_are_joined_apart_and_bytes_are_capped() {
        let java =
            MultilineConfig { max_bytes: 30, ..config(MultilineConfig::preset("java").unwrap()) };
        let mut joiner = Joiner::default();
        let now = Instant::now();
        let mut stderr = line(0, "ERROR boom");
        stderr.stream = 2;
        let mut stdout = line(10, "INFO other stream");
        stdout.stream = 1;
        let mut frame = line(20, "\tat a.B.c(B.java:1)");
        frame.stream = 2;
        assert!(joiner.push(&java, stderr, 10, now).is_empty());
        assert!(joiner.push(&java, stdout, 20, now).is_empty());
        assert!(joiner.push(&java, frame.clone(), 30, now).is_empty());
        frame.offset = 30;
        let done = joiner.push(&java, frame, 40, now);
        assert_eq!(done.len(), 1, "the byte cap completes the stderr record");
        assert_eq!(done[0].0.message, "ERROR boom\n\tat a.B.c(B.java:1)");
        let rest: Vec<String> =
            joiner.flush(&java, now, true).into_iter().map(|(r, _)| r.message).collect();
        assert_eq!(rest, ["INFO other stream", "\tat a.B.c(B.java:1)"]);
    }
}
