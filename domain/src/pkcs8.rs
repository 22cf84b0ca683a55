//! The PKCS#1 `RSAPrivateKey` inside a PKCS#8 `PrivateKeyInfo` (RFC 5208), as Google's service
//! account files hold their keys. jsonwebtoken's `rust_crypto` backend reads PKCS#1 DER only, and
//! the workspace leaves its PEM parser off; this short DER walk is shared by the core's FCM client
//! and the sandbox's FCM stand-in.

const DER_INTEGER: u8 = 0x02;
const DER_OCTET_STRING: u8 = 0x04;
const DER_OBJECT_IDENTIFIER: u8 = 0x06;
pub const DER_SEQUENCE: u8 = 0x30;
/// 1.2.840.113549.1.1.1, `rsaEncryption`.
const RSA_ENCRYPTION_OID: [u8; 9] = [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];

/// The PKCS#1 key inside a PKCS#8 DER document.
///
/// # Errors
/// A message saying what is malformed: not DER, another version, not an RSA key.
pub fn pkcs1_from_pkcs8(der: &[u8]) -> Result<&[u8], String> {
    let (info, _) = der_element(der, DER_SEQUENCE)?;
    let (version, rest) = der_element(info, DER_INTEGER)?;
    if version != [0] {
        return Err("PKCS#8: unknown version".to_owned());
    }
    let (algorithm, rest) = der_element(rest, DER_SEQUENCE)?;
    let (oid, _) = der_element(algorithm, DER_OBJECT_IDENTIFIER)?;
    if oid != RSA_ENCRYPTION_OID {
        return Err("PKCS#8: not an RSA key".to_owned());
    }
    let (key, _) = der_element(rest, DER_OCTET_STRING)?;
    Ok(key)
}

/// The contents of the DER element with `tag` at the start of `input`, and what follows it.
fn der_element(input: &[u8], tag: u8) -> Result<(&[u8], &[u8]), String> {
    /// Longer lengths than four bytes describe elements over 4 GiB: not a key.
    const LENGTH_BYTES_MAX: usize = 4;
    let truncated = || "DER: truncated".to_owned();
    let (&found, rest) = input.split_first().ok_or_else(truncated)?;
    if found != tag {
        return Err(format!("DER: expected tag {tag:#04x}, found {found:#04x}"));
    }
    let (&first, rest) = rest.split_first().ok_or_else(truncated)?;
    let (length, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > LENGTH_BYTES_MAX {
            return Err("DER: unsupported length".to_owned());
        }
        let (bytes, rest) = rest.split_at_checked(count).ok_or_else(truncated)?;
        let length = bytes
            .iter()
            .fold(0_usize, |length, &byte| (length << 8) | usize::from(byte));
        (length, rest)
    };
    rest.split_at_checked(length).ok_or_else(truncated)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_or_truncated_documents_are_refused() {
        assert!(pkcs1_from_pkcs8(&[DER_SEQUENCE, 0x03, DER_INTEGER, 0x01, 0x01]).is_err());
        assert!(pkcs1_from_pkcs8(&[DER_SEQUENCE, 0x84, 0xff, 0xff, 0xff, 0xff]).is_err());
        assert!(pkcs1_from_pkcs8(&[]).is_err());
    }

    #[test]
    fn the_rsa_key_inside_a_minimal_document_is_found() {
        let mut der = vec![DER_SEQUENCE, 0];
        let mut body = vec![
            DER_INTEGER,
            1,
            0,
            DER_SEQUENCE,
            11,
            DER_OBJECT_IDENTIFIER,
            9,
        ];
        body.extend_from_slice(&RSA_ENCRYPTION_OID);
        body.extend_from_slice(&[DER_OCTET_STRING, 3, 7, 8, 9]);
        der[1] = u8::try_from(body.len()).unwrap_or(0);
        der.extend_from_slice(&body);
        assert_eq!(pkcs1_from_pkcs8(&der), Ok(&[7_u8, 8, 9][..]));
    }
}
