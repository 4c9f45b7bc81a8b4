//! `X-Twilio-Signature`: HMAC-SHA1 over the URL Twilio called followed by
//! every POST parameter, sorted by name, concatenated as name then value.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;

type HmacSha1 = Hmac<Sha1>;

fn mac(auth_token: &str, url: &str, params: &[(String, String)]) -> HmacSha1 {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    let mut mac = HmacSha1::new_from_slice(auth_token.as_bytes()).expect("HMAC accepts keys of any length");
    mac.update(url.as_bytes());
    for (name, value) in sorted {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    mac
}

/// The signature Twilio would send for this request.
pub fn sign(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    STANDARD.encode(mac(auth_token, url, params).finalize().into_bytes())
}

/// Checks a received signature in constant time.
pub fn verify(auth_token: &str, url: &str, params: &[(String, String)], signature: &str) -> bool {
    match STANDARD.decode(signature.trim()) {
        Ok(bytes) => mac(auth_token, url, params).verify_slice(&bytes).is_ok(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn official_params() -> Vec<(String, String)> {
        [
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+14158675309"),
            ("Digits", "1234"),
            ("From", "+14158675309"),
            ("To", "+18005551212"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    const OFFICIAL_URL: &str = "https://mycompany.com/myapp.php?foo=1&bar=2";

    #[test]
    fn twilio_official_vector() {
        assert_eq!(
            sign("12345", OFFICIAL_URL, &official_params()),
            "RSOYDt4T1cUTdK1PDd93/VVr8B8="
        );
        assert!(verify(
            "12345",
            OFFICIAL_URL,
            &official_params(),
            "RSOYDt4T1cUTdK1PDd93/VVr8B8="
        ));
    }

    #[test]
    fn order_of_parameters_does_not_matter() {
        let mut reversed = official_params();
        reversed.reverse();
        assert!(verify(
            "12345",
            OFFICIAL_URL,
            &reversed,
            "RSOYDt4T1cUTdK1PDd93/VVr8B8="
        ));
    }

    #[test]
    fn any_change_breaks_it() {
        let sig = "RSOYDt4T1cUTdK1PDd93/VVr8B8=";
        assert!(!verify("12346", OFFICIAL_URL, &official_params(), sig));
        assert!(!verify(
            "12345",
            "https://mycompany.com/myapp.php?foo=1&bar=3",
            &official_params(),
            sig
        ));
        let mut tampered = official_params();
        tampered[2].1 = "9999".into();
        assert!(!verify("12345", OFFICIAL_URL, &tampered, sig));
        let mut extra = official_params();
        extra.push(("Body".into(), "hi".into()));
        assert!(!verify("12345", OFFICIAL_URL, &extra, sig));
        assert!(!verify("12345", OFFICIAL_URL, &official_params(), "not base64!"));
        assert!(!verify("12345", OFFICIAL_URL, &official_params(), ""));
    }
}
