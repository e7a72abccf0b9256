//! The city's unified login (统一身份认证) for residents: Jiuzhu as an
//! OpenID Connect relying party, with the authorization code flow, PKCE
//! (S256), `state` and `nonce`.
//!
//! The issuer's endpoints come from `{issuer}/.well-known/openid-configuration`,
//! read when first needed and again after [`PROVIDER_FRESH`]; its signing
//! keys from its `jwks_uri`, read again at once when a token names a key
//! not among them (the issuer turned its keys over). The code is exchanged
//! at the token endpoint with the client secret (HTTP Basic, or in the form
//! when the issuer only takes that) and the PKCE verifier. The ID token is
//! accepted only when it is signed by one of the issuer's keys with an
//! asymmetric algorithm (RS256 and the other RSA and ECDSA ones, never a
//! shared secret or none), names the issuer as `iss` and the client among
//! its `aud` (and as `azp` when it names others too), is not expired, was
//! issued within [`ID_TOKEN_AGE_SECONDS`] (with [`LEEWAY_SECONDS`] for
//! clocks apart), and carries the nonce of the login it answers. Every
//! outbound call has the configured time limit, follows no redirect and
//! reads at most [`MAX_ANSWER_BYTES`].
//!
//! Logging out (RP-initiated logout 1.0): when the issuer's discovery
//! document names an `end_session_endpoint`, a resident who logged in with
//! it is sent there after their session here is ended, with the client's
//! id and `post_logout_redirect_uri` (this server's login page, next to the
//! callback: register it with the issuer), so the unified login's own
//! session ends too. No ID token is kept to send as `id_token_hint`: it
//! carries the resident ID number in clear; an issuer then asks the resident
//! to confirm.

use std::fmt;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use jsonwebtoken::jwk::{Jwk, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use sha2::{Digest as _, Sha256};

/// How long the issuer's endpoints and keys are used before they are read
/// again.
const PROVIDER_FRESH: Duration = Duration::from_secs(3600);
/// How far apart the issuer's clock and this server's may be.
const LEEWAY_SECONDS: i64 = 60;
/// The oldest ID token accepted: it is made when the code is exchanged,
/// moments before it is checked.
const ID_TOKEN_AGE_SECONDS: i64 = 600;
/// The largest answer read from the issuer.
const MAX_ANSWER_BYTES: usize = 1024 * 1024;
/// The signature algorithms accepted: asymmetric only.
const ALGORITHMS: [Algorithm; 8] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
];

/// How residents log in with the city's unified login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcSettings {
    /// The issuer's URL, exactly as its ID tokens name it (`iss`).
    pub issuer: String,
    pub client_id: String,
    pub client_secret: ClientSecret,
    /// This server's `/login/oidc/callback` as the issuer knows it.
    pub redirect_url: String,
    /// The ID token's claim that carries the resident ID number.
    pub resident_id_claim: String,
    /// The scopes asked for, `openid` among them.
    pub scopes: Vec<String>,
    /// The time limit of each call to the issuer.
    pub timeout_ms: u64,
}

/// The client secret: its Debug shows `***`; only [`ClientSecret::expose`]
/// gives the text.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientSecret(String);

impl ClientSecret {
    pub fn new(text: String) -> ClientSecret {
        ClientSecret(text)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ClientSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Why a login with the unified login did not succeed. The texts name the
/// cause for the log; none holds a secret, a token or an ID number.
#[derive(Debug, thiserror::Error)]
pub(crate) enum OidcError {
    /// The issuer could not be reached or answered something unusable.
    #[error("the issuer is unavailable: {0}")]
    Unavailable(String),
    /// The token endpoint refused the code.
    #[error("the token endpoint refused the code: {0}")]
    CodeRefused(String),
    /// The ID token did not pass a check.
    #[error("the ID token is refused: {0}")]
    TokenRefused(String),
    /// The ID token has no text in the resident ID claim.
    #[error("the ID token has no `{0}` claim")]
    NoResidentId(String),
}

/// What the browser keeps during a login: the `state` it comes back with,
/// the `nonce` the ID token must carry and the PKCE verifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pending {
    pub state: String,
    pub nonce: String,
    pub verifier: String,
}

impl Pending {
    /// Three fresh random values (32 bytes each, base64url).
    pub(crate) fn generate() -> Result<Pending, OidcError> {
        Ok(Pending {
            state: random_text()?,
            nonce: random_text()?,
            verifier: random_text()?,
        })
    }

    /// The cookie's value: the three joined by dots (none holds one).
    pub(crate) fn to_cookie(&self) -> String {
        format!("{}.{}.{}", self.state, self.nonce, self.verifier)
    }

    pub(crate) fn from_cookie(value: &str) -> Option<Pending> {
        let mut parts = value.split('.');
        let (state, nonce, verifier) = (parts.next()?, parts.next()?, parts.next()?);
        let good = |part: &str| {
            (43..=128).contains(&part.len())
                && part
                    .bytes()
                    .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_')
        };
        if parts.next().is_some() || ![state, nonce, verifier].into_iter().all(good) {
            return None;
        }
        Some(Pending {
            state: state.to_owned(),
            nonce: nonce.to_owned(),
            verifier: verifier.to_owned(),
        })
    }

    /// The PKCE challenge: base64url(SHA-256(verifier)).
    pub(crate) fn challenge(&self) -> String {
        URL_SAFE_NO_PAD.encode(Sha256::digest(self.verifier.as_bytes()))
    }
}

fn random_text() -> Result<String, OidcError> {
    let mut random = [0u8; 32];
    getrandom::fill(&mut random)
        .map_err(|error| OidcError::Unavailable(format!("no randomness: {error}")))?;
    Ok(URL_SAFE_NO_PAD.encode(random))
}

/// Whether two texts are equal, in time that does not depend on where they
/// differ.
pub(crate) fn same_text(given: &str, expected: &str) -> bool {
    given.len() == expected.len()
        && given
            .bytes()
            .zip(expected.bytes())
            .fold(0u8, |differ, (a, b)| differ | (a ^ b))
            == 0
}

/// The issuer's endpoints, as its discovery document gives them.
#[derive(Debug, Clone)]
struct Provider {
    authorization_endpoint: String,
    token_endpoint: String,
    jwks_uri: String,
    /// Where the unified login's own session is ended, if the issuer says.
    end_session_endpoint: Option<String>,
    /// The client authenticates in the form, not with HTTP Basic.
    secret_in_form: bool,
    read_at: Instant,
}

#[derive(Debug, Deserialize)]
struct Discovery {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    jwks_uri: String,
    #[serde(default)]
    end_session_endpoint: Option<String>,
    #[serde(default)]
    token_endpoint_auth_methods_supported: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
struct TokenAnswer {
    id_token: Option<String>,
}

#[derive(Debug, Deserialize)]
struct TokenError {
    error: Option<String>,
}

/// The keys as last read, and when.
#[derive(Debug, Clone)]
struct Keys {
    set: JwkSet,
    read_at: Instant,
}

/// The unified login's client: the settings, one HTTP client, and the
/// issuer's endpoints and keys as last read.
#[derive(Debug)]
pub(crate) struct Oidc {
    settings: OidcSettings,
    http: reqwest::Client,
    provider: tokio::sync::Mutex<Option<Provider>>,
    keys: tokio::sync::Mutex<Option<Keys>>,
}

impl Oidc {
    pub(crate) fn new(settings: OidcSettings) -> Result<Oidc, reqwest::Error> {
        let timeout = Duration::from_millis(settings.timeout_ms);
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("jiuzhu/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Oidc {
            settings,
            http,
            provider: tokio::sync::Mutex::new(None),
            keys: tokio::sync::Mutex::new(None),
        })
    }

    /// Where to send the browser to log in, for the login `pending`.
    pub(crate) async fn authorization_url(&self, pending: &Pending) -> Result<String, OidcError> {
        let provider = self.provider().await?;
        let scopes = self.settings.scopes.join(" ");
        let challenge = pending.challenge();
        let url = reqwest::Url::parse_with_params(
            &provider.authorization_endpoint,
            [
                ("response_type", "code"),
                ("client_id", self.settings.client_id.as_str()),
                ("redirect_uri", self.settings.redirect_url.as_str()),
                ("scope", scopes.as_str()),
                ("state", pending.state.as_str()),
                ("nonce", pending.nonce.as_str()),
                ("code_challenge", challenge.as_str()),
                ("code_challenge_method", "S256"),
            ],
        )
        .map_err(|error| OidcError::Unavailable(format!("the authorization endpoint: {error}")))?;
        Ok(url.into())
    }

    /// Exchanges `code` for an ID token, checks it against `pending`, and
    /// gives the text of the resident ID claim.
    pub(crate) async fn finish(&self, code: &str, pending: &Pending) -> Result<String, OidcError> {
        let provider = self.provider().await?;
        let id_token = self.exchange(&provider, code, pending).await?;
        let claims = self.verify(&provider, &id_token, &pending.nonce).await?;
        let claim = &self.settings.resident_id_claim;
        match claims.get(claim) {
            Some(serde_json::Value::String(text)) if !text.trim().is_empty() => Ok(text.trim().to_owned()),
            _ => Err(OidcError::NoResidentId(claim.clone())),
        }
    }

    /// Where to send the browser after its session here ended, to end the
    /// unified login's session too: `None` when the issuer has no
    /// `end_session_endpoint`.
    pub(crate) async fn logout_url(&self) -> Result<Option<String>, OidcError> {
        let provider = self.provider().await?;
        let Some(endpoint) = provider.end_session_endpoint else {
            return Ok(None);
        };
        let back = self.post_logout_redirect_url();
        let url = reqwest::Url::parse_with_params(
            &endpoint,
            [
                ("client_id", self.settings.client_id.as_str()),
                ("post_logout_redirect_uri", back.as_str()),
            ],
        )
        .map_err(|error| OidcError::Unavailable(format!("the end_session_endpoint: {error}")))?;
        Ok(Some(url.into()))
    }

    /// This server's login page, where the issuer sends the browser back
    /// after logging out: the callback's URL with `/login/oidc/callback`
    /// made `/login` (so behind a path prefix as well), or the callback's
    /// origin with `/login`.
    pub(crate) fn post_logout_redirect_url(&self) -> String {
        let callback = self.settings.redirect_url.as_str();
        let callback = callback.split(['?', '#']).next().unwrap_or(callback);
        if let Some(base) = callback.strip_suffix("/oidc/callback") {
            return base.to_owned();
        }
        match reqwest::Url::parse(callback) {
            Ok(mut url) => {
                url.set_path("/login");
                url.into()
            }
            Err(_) => "/login".to_owned(),
        }
    }

    /// The issuer's endpoints: as last read if fresh, else read now.
    async fn provider(&self) -> Result<Provider, OidcError> {
        let mut cached = self.provider.lock().await;
        if let Some(provider) = cached
            .as_ref()
            .filter(|provider| provider.read_at.elapsed() < PROVIDER_FRESH)
        {
            return Ok(provider.clone());
        }
        let url = format!(
            "{}/.well-known/openid-configuration",
            self.settings.issuer.trim_end_matches('/')
        );
        let answer = self.get(&url, "the discovery document").await?;
        let discovery: Discovery = serde_json::from_slice(&answer)
            .map_err(|error| OidcError::Unavailable(format!("the discovery document: {error}")))?;
        if discovery.issuer != self.settings.issuer {
            return Err(OidcError::Unavailable(format!(
                "the discovery document names the issuer {:?}, not the one configured",
                discovery.issuer
            )));
        }
        for (name, endpoint) in [
            ("authorization_endpoint", &discovery.authorization_endpoint),
            ("token_endpoint", &discovery.token_endpoint),
            ("jwks_uri", &discovery.jwks_uri),
        ] {
            if !self.acceptable_endpoint(endpoint) {
                return Err(OidcError::Unavailable(format!(
                    "the discovery document's {name} is not an https URL"
                )));
            }
        }
        let methods = discovery
            .token_endpoint_auth_methods_supported
            .unwrap_or_default();
        let secret_in_form = !methods.is_empty()
            && !methods.iter().any(|method| method == "client_secret_basic")
            && methods.iter().any(|method| method == "client_secret_post");
        if let Some(endpoint) = &discovery.end_session_endpoint {
            if !self.acceptable_endpoint(endpoint) {
                return Err(OidcError::Unavailable(
                    "the discovery document's end_session_endpoint is not an https URL".to_owned(),
                ));
            }
        }
        let provider = Provider {
            authorization_endpoint: discovery.authorization_endpoint,
            token_endpoint: discovery.token_endpoint,
            jwks_uri: discovery.jwks_uri,
            end_session_endpoint: discovery.end_session_endpoint,
            secret_in_form,
            read_at: Instant::now(),
        };
        *cached = Some(provider.clone());
        Ok(provider)
    }

    /// An endpoint must be https, unless the issuer itself is plain http
    /// (only allowed on this machine, for trials).
    fn acceptable_endpoint(&self, endpoint: &str) -> bool {
        match reqwest::Url::parse(endpoint) {
            Ok(url) => {
                url.scheme() == "https"
                    || (url.scheme() == "http" && self.settings.issuer.starts_with("http://"))
            }
            Err(_) => false,
        }
    }

    async fn exchange(
        &self,
        provider: &Provider,
        code: &str,
        pending: &Pending,
    ) -> Result<String, OidcError> {
        let settings = &self.settings;
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", settings.redirect_url.as_str()),
            ("code_verifier", pending.verifier.as_str()),
        ];
        let mut request = self.http.post(&provider.token_endpoint);
        if provider.secret_in_form {
            form.push(("client_id", settings.client_id.as_str()));
            form.push(("client_secret", settings.client_secret.expose()));
        } else {
            // RFC 6749 §2.3.1: each form-encoded before Basic.
            let credentials = format!(
                "{}:{}",
                form_encoded(&settings.client_id),
                form_encoded(settings.client_secret.expose())
            );
            request = request.header(
                reqwest::header::AUTHORIZATION,
                format!("Basic {}", STANDARD.encode(credentials)),
            );
        }
        let response = request
            .header(reqwest::header::ACCEPT, "application/json")
            .form(&form)
            .send()
            .await
            .map_err(|error| {
                OidcError::Unavailable(format!("the token endpoint: {}", without_url(&error)))
            })?;
        let status = response.status();
        let body = read_limited(response, "the token endpoint").await?;
        if !status.is_success() {
            let error = serde_json::from_slice::<TokenError>(&body)
                .ok()
                .and_then(|answer| answer.error)
                .map(|code| printable(&code))
                .unwrap_or_default();
            return Err(
                if status == reqwest::StatusCode::BAD_REQUEST || status == reqwest::StatusCode::UNAUTHORIZED {
                    OidcError::CodeRefused(format!("{status} {error}"))
                } else {
                    OidcError::Unavailable(format!("the token endpoint answered {status} {error}"))
                },
            );
        }
        let answer: TokenAnswer = serde_json::from_slice(&body)
            .map_err(|error| OidcError::Unavailable(format!("the token endpoint's answer: {error}")))?;
        answer
            .id_token
            .ok_or_else(|| OidcError::TokenRefused("the token endpoint gave no ID token".to_owned()))
    }

    /// The ID token's claims, once every check passed.
    async fn verify(
        &self,
        provider: &Provider,
        id_token: &str,
        nonce: &str,
    ) -> Result<serde_json::Map<String, serde_json::Value>, OidcError> {
        let refused = |what: String| OidcError::TokenRefused(what);
        let header =
            jsonwebtoken::decode_header(id_token).map_err(|error| refused(format!("its header: {error}")))?;
        if !ALGORITHMS.contains(&header.alg) {
            return Err(refused(format!("it is signed with {:?}", header.alg)));
        }
        let key = self.key(provider, header.kid.as_deref(), header.alg).await?;
        let settings = &self.settings;
        let mut validation = Validation::new(header.alg);
        validation.leeway = LEEWAY_SECONDS.unsigned_abs();
        validation.set_issuer(&[settings.issuer.as_str()]);
        validation.set_audience(&[settings.client_id.as_str()]);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
        validation.validate_exp = true;
        validation.validate_nbf = true;
        let data =
            jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(id_token, &key, &validation)
                .map_err(|error| refused(format!("{error}")))?;
        let claims = data.claims;
        let now = now_unix();
        let issued = claims
            .get("iat")
            .and_then(serde_json::Value::as_i64)
            .ok_or_else(|| refused("its iat is not a number".to_owned()))?;
        if issued > now + LEEWAY_SECONDS {
            return Err(refused("it was issued in the future".to_owned()));
        }
        if issued < now - ID_TOKEN_AGE_SECONDS - LEEWAY_SECONDS {
            return Err(refused("it was issued too long ago".to_owned()));
        }
        let audiences = match claims.get("aud") {
            Some(serde_json::Value::Array(audiences)) => audiences.len(),
            _ => 1,
        };
        match claims.get("azp") {
            Some(serde_json::Value::String(party)) if party != &settings.client_id => {
                return Err(refused("its azp is another client".to_owned()))
            }
            None if audiences > 1 => return Err(refused("it names other audiences and no azp".to_owned())),
            _ => {}
        }
        match claims.get("nonce") {
            Some(serde_json::Value::String(given)) if same_text(given, nonce) => Ok(claims),
            Some(_) => Err(refused("its nonce is not the login's".to_owned())),
            None => Err(refused("it has no nonce".to_owned())),
        }
    }

    /// The issuer's key `kid` for `algorithm`: from the keys as last read,
    /// else from the keys read again once.
    async fn key(
        &self,
        provider: &Provider,
        kid: Option<&str>,
        algorithm: Algorithm,
    ) -> Result<DecodingKey, OidcError> {
        let mut cached = self.keys.lock().await;
        let fresh = cached
            .as_ref()
            .filter(|keys| keys.read_at.elapsed() < PROVIDER_FRESH)
            .and_then(|keys| pick_key(&keys.set, kid, algorithm));
        let jwk = match fresh {
            Some(jwk) => jwk,
            None => {
                let answer = self.get(&provider.jwks_uri, "the issuer's keys").await?;
                let set: JwkSet = serde_json::from_slice(&answer)
                    .map_err(|error| OidcError::Unavailable(format!("the issuer's keys: {error}")))?;
                let found = pick_key(&set, kid, algorithm);
                *cached = Some(Keys {
                    set,
                    read_at: Instant::now(),
                });
                found.ok_or_else(|| {
                    OidcError::TokenRefused(format!(
                        "it names the key {:?}, which the issuer does not publish",
                        kid.map(printable).unwrap_or_default()
                    ))
                })?
            }
        };
        DecodingKey::from_jwk(&jwk)
            .map_err(|error| OidcError::TokenRefused(format!("the issuer's key: {error}")))
    }

    async fn get(&self, url: &str, what: &str) -> Result<Vec<u8>, OidcError> {
        let response = self
            .http
            .get(url)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|error| OidcError::Unavailable(format!("{what}: {}", without_url(&error))))?;
        if !response.status().is_success() {
            return Err(OidcError::Unavailable(format!(
                "{what}: answered {}",
                response.status()
            )));
        }
        read_limited(response, what).await
    }
}

/// The key of `set` a token signed with `algorithm` under `kid` names: the
/// one with that id, or the only signing key when the token names none.
fn pick_key(set: &JwkSet, kid: Option<&str>, algorithm: Algorithm) -> Option<Jwk> {
    let usable = |jwk: &&Jwk| {
        !matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption))
            && jwk.common.key_algorithm.is_none_or(|declared| {
                declared
                    .to_string()
                    .parse::<Algorithm>()
                    .is_ok_and(|declared| declared == algorithm)
            })
            && DecodingKey::from_jwk(jwk).is_ok_and(|key| key.family() == algorithm.family())
    };
    match kid {
        Some(kid) => set
            .keys
            .iter()
            .filter(|jwk| jwk.common.key_id.as_deref() == Some(kid))
            .find(usable)
            .cloned(),
        None => {
            let mut candidates = set.keys.iter().filter(usable);
            match (candidates.next(), candidates.next()) {
                (Some(only), None) => Some(only.clone()),
                _ => None,
            }
        }
    }
}

/// Reads a body of at most [`MAX_ANSWER_BYTES`].
async fn read_limited(mut response: reqwest::Response, what: &str) -> Result<Vec<u8>, OidcError> {
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > MAX_ANSWER_BYTES {
                    return Err(OidcError::Unavailable(format!(
                        "{what}: the answer is larger than {MAX_ANSWER_BYTES} bytes"
                    )));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body),
            Err(error) => return Err(OidcError::Unavailable(format!("{what}: {}", without_url(&error)))),
        }
    }
}

/// An HTTP client's error without the URL it names (which may carry a
/// query).
fn without_url(error: &reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "cannot connect"
    } else if error.is_body() || error.is_decode() {
        "the answer could not be read"
    } else {
        "the request failed"
    };
    let mut cause = String::new();
    let mut source = std::error::Error::source(error);
    while let Some(inner) = source {
        cause = inner.to_string();
        source = inner.source();
    }
    if cause.is_empty() {
        kind.to_owned()
    } else {
        format!("{kind} ({cause})")
    }
}

/// A text from the issuer, safe to log: printable ASCII, at most 64
/// characters.
fn printable(text: &str) -> String {
    text.chars()
        .filter(|character| character.is_ascii_graphic() || *character == ' ')
        .take(64)
        .collect()
}

/// `application/x-www-form-urlencoded` encoding of one value.
fn form_encoded(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => out.push(char::from(byte)),
            b' ' => out.push('+'),
            other => out.push_str(&format!("%{other:02X}")),
        }
    }
    out
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pkce_challenge_is_the_rfc_7636_example() {
        let pending = Pending {
            state: String::new(),
            nonce: String::new(),
            verifier: "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk".to_owned(),
        };
        assert_eq!(pending.challenge(), "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
    }

    #[test]
    fn a_pending_login_comes_back_from_its_cookie_and_nothing_else_does() {
        let pending = Pending::generate().unwrap();
        assert_eq!(Pending::from_cookie(&pending.to_cookie()), Some(pending.clone()));
        assert_ne!(Pending::generate().unwrap(), pending);
        for bad in [
            "",
            "a.b.c",
            &format!("{}.{}", pending.state, pending.nonce),
            &format!("{}.x", pending.to_cookie()),
            &pending.to_cookie().replacen('.', ".;", 1),
        ] {
            assert_eq!(Pending::from_cookie(bad), None, "{bad}");
        }
    }

    #[test]
    fn texts_compare_equal_only_when_equal() {
        assert!(same_text("abc", "abc"));
        assert!(!same_text("abc", "abd"));
        assert!(!same_text("abc", "abcd"));
        assert!(!same_text("", "a"));
    }

    #[test]
    fn credentials_are_form_encoded_before_basic() {
        assert_eq!(form_encoded("jiuzhu client"), "jiuzhu+client");
        assert_eq!(form_encoded("s3cr:t/é"), "s3cr%3At%2F%C3%A9");
    }

    #[test]
    fn the_secret_is_not_in_the_debug_output() {
        let settings = OidcSettings {
            issuer: "https://login.example".to_owned(),
            client_id: "jiuzhu".to_owned(),
            client_secret: ClientSecret::new("hunter2".to_owned()),
            redirect_url: "https://jiuzhu.example/login/oidc/callback".to_owned(),
            resident_id_claim: "resident_id".to_owned(),
            scopes: vec!["openid".to_owned()],
            timeout_ms: 5000,
        };
        let shown = format!("{settings:?}");
        assert!(!shown.contains("hunter2") && shown.contains("***"), "{shown}");
    }

    #[test]
    fn the_issuer_sends_the_browser_back_to_the_login_page_beside_the_callback() {
        let back = |redirect_url: &str| {
            let settings = OidcSettings {
                issuer: "https://login.example".to_owned(),
                client_id: "jiuzhu".to_owned(),
                client_secret: ClientSecret::new("hunter2".to_owned()),
                redirect_url: redirect_url.to_owned(),
                resident_id_claim: "resident_id".to_owned(),
                scopes: vec!["openid".to_owned()],
                timeout_ms: 5000,
            };
            Oidc::new(settings).unwrap().post_logout_redirect_url()
        };
        assert_eq!(
            back("https://jiuzhu.example/login/oidc/callback"),
            "https://jiuzhu.example/login"
        );
        assert_eq!(
            back("https://city.example/jiuzhu/login/oidc/callback?x=1"),
            "https://city.example/jiuzhu/login"
        );
        assert_eq!(
            back("https://jiuzhu.example/back"),
            "https://jiuzhu.example/login"
        );
    }
}
