//! Email over SMTP with `lettre`: implicit TLS or a required `STARTTLS` (rustls on ring), or
//! plain only to loopback (checked at load). Credentials are only offered on an encrypted
//! connection: lettre's `Tls::Required` fails before `AUTH` when the upgrade does not happen.

use async_trait::async_trait;
use lettre::message::{Mailbox, MultiPart, header};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::config::{EmailConfig, EmailTls, Secret};
use crate::dispatch::{Notification, render};
use crate::notifier::{Notifier, NotifyError, Rendered};

pub struct Email {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    to: Vec<Mailbox>,
}

impl Email {
    pub fn new(config: &EmailConfig, password: Option<Secret>) -> Result<Self, String> {
        let (host, port) = config
            .smtp
            .rsplit_once(':')
            .and_then(|(h, p)| Some((h.to_owned(), p.parse::<u16>().ok()?)))
            .ok_or_else(|| format!("email.smtp: {:?} is not host:port", config.smtp))?;
        let mut tls = TlsParameters::builder(host.clone());
        if let Some(ca) = &config.ca_file {
            let pem = std::fs::read(ca)
                .map_err(|e| format!("email.ca_file: cannot read {}: {e}", ca.display()))?;
            let cert = Certificate::from_pem(&pem)
                .map_err(|e| format!("email.ca_file {}: {e}", ca.display()))?;
            tls = tls.add_root_certificate(cert);
        }
        let tls = tls.build_rustls().map_err(|e| format!("email TLS settings: {e}"))?;
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&host)
            .port(port)
            .tls(match config.tls {
                EmailTls::Tls => Tls::Wrapper(tls),
                EmailTls::Starttls => Tls::Required(tls),
                EmailTls::None => Tls::None,
            })
            .timeout(Some(std::time::Duration::from_secs(30)));
        if let (Some(user), Some(password)) = (&config.username, password) {
            builder = builder.credentials(Credentials::new(user.clone(), password.0));
        }
        let mailbox =
            |a: &str| a.parse::<Mailbox>().map_err(|e| format!("email address {a:?}: {e}"));
        Ok(Self {
            transport: builder.build(),
            from: mailbox(&config.from)?,
            to: config.to.iter().map(|a| mailbox(a)).collect::<Result<_, _>>()?,
        })
    }

    /// The subject, the plain text and the HTML of a notification.
    pub fn parts(n: &Notification) -> (String, String, String) {
        let subject = format!(
            "[{}:{}] {}",
            n.status().to_uppercase(),
            n.alerts.len(),
            render(&n.group_labels)
        );
        let mut plain = vec![subject.clone(), String::new()];
        let mut html = format!(
            "<h3>{}</h3><table border=\"1\" cellpadding=\"4\"><tr><th>state</th><th>alert</th><th>labels</th><th>summary</th></tr>",
            escape(&subject)
        );
        for a in &n.alerts {
            let state = if a.is_firing() { "FIRING" } else { "RESOLVED" };
            plain.push(format!("[{state}] {} {}: {}", a.name(), render(&a.labels), a.summary()));
            html.push_str(&format!(
                "<tr><td>{state}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(a.name()),
                escape(&render(&a.labels)),
                escape(a.summary())
            ));
        }
        html.push_str("</table>");
        (subject, plain.join("\n"), html)
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

#[async_trait]
impl Notifier for Email {
    fn kind(&self) -> &'static str {
        "email"
    }

    fn render(&self, notifications: &[Notification]) -> Rendered {
        let (subject, plain, html) = Self::parts(&notifications[0]);
        Rendered {
            carried: 1,
            text: format!("Subject: {subject}\n\n{plain}"),
            bytes: subject.len() + plain.len() + html.len(),
            ..Rendered::default()
        }
    }

    async fn send(&self, notifications: &[Notification]) -> Result<usize, NotifyError> {
        let n = &notifications[0];
        let (subject, plain, html) = Self::parts(n);
        let mut message = Message::builder()
            .from(self.from.clone())
            .subject(subject)
            .message_id(Some(format!("<{}@sluice>", n.id)));
        for to in &self.to {
            message = message.to(to.clone());
        }
        let message = message
            .header(header::MIME_VERSION_1_0)
            .multipart(MultiPart::alternative_plain_html(plain, html))
            .map_err(|e| NotifyError::Config(format!("cannot build the email: {e}")))?;
        match self.transport.send(message).await {
            Ok(_) => Ok(1),
            Err(e) if e.is_permanent() => Err(NotifyError::Config(format!("SMTP refused: {e}"))),
            Err(e) if e.is_tls() => Err(NotifyError::Config(format!("SMTP TLS: {e}"))),
            Err(e) => Err(NotifyError::Retry(format!("SMTP: {e}"))),
        }
    }
}
