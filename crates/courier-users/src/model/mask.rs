//! Emails as logs may show them: the first character of the local part and the domain (`a***@example.com`).
//! Enough to tell two users apart while debugging, not enough to harvest addresses from log storage.

/// `ada.lovelace@example.com` -> `a***@example.com`; something without an `@` -> `***`.
pub fn mask_email(email: &str) -> String {
    match email.rsplit_once('@') {
        Some((local, domain)) => {
            let first = local.chars().next().map(String::from).unwrap_or_default();
            format!("{first}***@{domain}")
        }
        None => "***".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::mask_email;

    #[test]
    fn keeps_one_character_and_the_domain() {
        assert_eq!(mask_email("ada.lovelace@example.com"), "a***@example.com");
        assert_eq!(mask_email("é@example.com"), "é***@example.com");
        assert_eq!(mask_email("@example.com"), "***@example.com");
        assert_eq!(mask_email("not-an-email"), "***");
    }
}
