//! The one SHA-256 the crate uses: static API key digests and JWK fingerprints.

/// SHA-256 of `data`: AWS-LC's assembly when the `aws-lc` backend is compiled in, else `sha2`.
pub(crate) fn sha256(data: &[u8]) -> [u8; 32] {
    #[cfg(feature = "aws-lc")]
    {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data);
        let mut out = [0u8; 32];
        out.copy_from_slice(digest.as_ref());
        out
    }
    #[cfg(not(feature = "aws-lc"))]
    {
        use sha2::Digest as _;
        sha2::Sha256::digest(data).into()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn sha256_matches_the_known_answer() {
        let digest = super::sha256(b"abc");
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
