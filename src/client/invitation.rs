//! The text an invite travels in from an admin to a newcomer: a `natter://invite` link naming
//! the server's address, the fingerprint of its certificate (a host's own, self-signed one, which
//! the newcomer still confirms) and the one-time code. Made on the host's screen, read back from
//! whatever the person pasted (the link, a message holding it, or a bare code).

use serde::Serialize;
use ts_rs::TS;
use url::Url;

use crate::tls::Fingerprint;

/// What comes before the query of an invite link.
const LINK_PREFIX: &str = "natter://invite?";

/// An invite code is a token of the server's (256 bits, base64url): this many characters.
const CODE_CHARS: usize = 43;

/// An invite as the desktop shows and reads it (docs/ipc.md `InviteLink`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, TS)]
#[ts(export)]
pub struct InviteLink {
    /// The server's address (`https://host:port/`); absent when only a code was given.
    pub server: Option<String>,
    /// The fingerprint of the server's certificate, for a server trusted by fingerprint.
    pub fingerprint: Option<String>,
    /// The one-time code, for `POST /api/register`'s `invite`.
    pub code: String,
}

/// Why pasted text is not an invite.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadInvite {
    #[error("this is not an invite: paste the invite link or its code")]
    NotAnInvite,
    #[error("the invite's server address is not an http(s) address: {0}")]
    Server(String),
    #[error("the invite's fingerprint is not valid: {0}")]
    Fingerprint(String),
}

impl InviteLink {
    /// The link for `code` at `server` (with the certificate's fingerprint for a host's own).
    pub fn new(server: &Url, fingerprint: Option<Fingerprint>, code: &str) -> Self {
        Self {
            server: Some(server.to_string()),
            fingerprint: fingerprint.map(|f| f.to_string()),
            code: code.to_owned(),
        }
    }

    /// `natter://invite?server=...&fingerprint=...&code=...` (values percent-encoded).
    pub fn to_link(&self) -> String {
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        if let Some(server) = &self.server {
            query.append_pair("server", server);
        }
        if let Some(fingerprint) = &self.fingerprint {
            query.append_pair("fingerprint", fingerprint);
        }
        query.append_pair("code", &self.code);
        format!("{LINK_PREFIX}{}", query.finish())
    }

    /// Reads pasted text: the first invite link in it, or else the whole text as a bare code.
    pub fn read(text: &str) -> Result<Self, BadInvite> {
        let text = text.trim();
        let Some(start) = text.find(LINK_PREFIX) else {
            return valid_code(text)
                .then(|| Self {
                    server: None,
                    fingerprint: None,
                    code: text.to_owned(),
                })
                .ok_or(BadInvite::NotAnInvite);
        };
        let link = text[start + LINK_PREFIX.len()..]
            .split(|c: char| c.is_whitespace() || c == '<' || c == '>' || c == '"')
            .next()
            .unwrap_or_default();
        let (mut server, mut fingerprint, mut code) = (None, None, None);
        for (key, value) in url::form_urlencoded::parse(link.as_bytes()) {
            match &*key {
                "server" => server = Some(value.into_owned()),
                "fingerprint" => fingerprint = Some(value.into_owned()),
                "code" => code = Some(value.into_owned()),
                _ => {}
            }
        }
        let code = code
            .filter(|c| valid_code(c))
            .ok_or(BadInvite::NotAnInvite)?;
        let server = server
            .map(|s| match Url::parse(&s) {
                Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() => {
                    Ok(url.to_string())
                }
                _ => Err(BadInvite::Server(s)),
            })
            .transpose()?;
        let fingerprint = fingerprint
            .map(|f| {
                f.parse::<Fingerprint>()
                    .map(|f| f.to_string())
                    .map_err(|_| BadInvite::Fingerprint(f))
            })
            .transpose()?;
        Ok(Self {
            server,
            fingerprint,
            code,
        })
    }
}

/// A code as the server makes them: base64url characters, exactly [`CODE_CHARS`] of them.
fn valid_code(code: &str) -> bool {
    code.len() == CODE_CHARS
        && code
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    const CODE: &str = "Zq3v8N1xKcR5tYw0bLm2hJ9sDf6gA4eUoPi7nTk1XyE";

    #[test]
    fn a_link_reads_back_from_pasted_text() {
        let fp = Fingerprint::of_der(b"a host certificate");
        let server: Url = "https://192.168.1.20:8686".parse().unwrap();
        let invite = InviteLink::new(&server, Some(fp), CODE);
        let link = invite.to_link();
        assert!(link.starts_with("natter://invite?server=https%3A%2F%2F192.168.1.20"));
        for pasted in [
            link.clone(),
            format!("  {link}\n"),
            format!("Join me on Natter: {link} (fingerprint {fp})"),
            format!("<{link}>"),
        ] {
            assert_eq!(InviteLink::read(&pasted).unwrap(), invite, "{pasted}");
        }
        // A fingerprint typed in lower case is the same fingerprint.
        let lower = link.replace(&fp.to_string(), &fp.to_string().to_lowercase());
        assert_eq!(InviteLink::read(&lower).unwrap(), invite);
    }

    #[test]
    fn a_bare_code_is_an_invite_without_a_server() {
        let invite = InviteLink::read(&format!(" {CODE} ")).unwrap();
        assert_eq!(invite.code, CODE);
        assert_eq!((invite.server, invite.fingerprint), (None, None));
    }

    /// Bad inputs: empty text, prose, a code of the wrong length or alphabet, a link without a
    /// code, a link whose server is not http(s), a link with a broken fingerprint.
    #[test]
    fn what_is_not_an_invite_says_why() {
        for bad in [
            "",
            "hello there",
            &CODE[1..],
            &format!("{}!", &CODE[1..]),
            "natter://invite?server=https%3A%2F%2Fh%3A1",
        ] {
            assert_eq!(InviteLink::read(bad), Err(BadInvite::NotAnInvite), "{bad}");
        }
        let bad_server = format!("natter://invite?server=javascript%3Aalert(1)&code={CODE}");
        assert!(matches!(
            InviteLink::read(&bad_server),
            Err(BadInvite::Server(_))
        ));
        let bad_fp = format!("natter://invite?fingerprint=ABCD&code={CODE}");
        assert!(matches!(
            InviteLink::read(&bad_fp),
            Err(BadInvite::Fingerprint(_))
        ));
    }
}
