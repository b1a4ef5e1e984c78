use super::*;

#[test]
fn a_checkpoint_line_round_trips_and_any_edit_breaks_its_signature() {
    let key = SigningKey::from_bytes(&[7; 32]);
    let keyring = Keyring::new(&[], Some(&key)).unwrap();
    let checkpoint = Checkpoint::sign(&key, 42, [9; 32], Utc::now());
    let line = checkpoint.to_json().to_string();
    let parsed = Checkpoint::parse_line(&line).unwrap();
    assert_eq!(parsed, checkpoint);
    assert_eq!(keyring.check(&parsed), Ok(()));
    let edited =
        Checkpoint::parse_line(&line.replace("\"position\":42", "\"position\":41")).unwrap();
    assert_eq!(keyring.check(&edited), Err(SignatureProblem::BadSignature));
    assert!(Checkpoint::parse_line(&line[..line.len() - 10]).is_err());
    let other = SigningKey::from_bytes(&[8; 32]);
    let foreign = Checkpoint::sign(&other, 42, [9; 32], Utc::now());
    assert!(matches!(
        keyring.check(&foreign),
        Err(SignatureProblem::UnknownKey(_))
    ));
}

#[test]
fn a_version_2_checkpoint_signs_its_snapshot_digest_and_passes_for_no_version_1() {
    let key = SigningKey::from_bytes(&[7; 32]);
    let keyring = Keyring::new(&[], Some(&key)).unwrap();
    let v2 = Checkpoint::sign_with(&key, 42, [9; 32], Utc::now(), Some([5; 32]));
    let line = v2.to_json().to_string();
    assert!(line.contains(&format!("\"snapshotDigest\":\"{}\"", "05".repeat(32))));
    let parsed = Checkpoint::parse_line(&line).unwrap();
    assert_eq!(parsed, v2);
    assert_eq!(keyring.check(&parsed), Ok(()));
    let v1 = Checkpoint::sign(&key, 42, [9; 32], Utc::now());
    assert!(!v1.to_json().to_string().contains("snapshotDigest"));
    for (mut edited, digest) in [(v2.clone(), None), (v2, Some([6; 32])), (v1, Some([5; 32]))] {
        edited.snapshot_digest = digest;
        assert_eq!(keyring.check(&edited), Err(SignatureProblem::BadSignature));
    }
}

#[test]
fn only_checkpoints_a_trusted_key_signed_are_trusted_and_the_others_are_counted() {
    let key = SigningKey::from_bytes(&[7; 32]);
    let stranger = SigningKey::from_bytes(&[8; 32]);
    let keyring = Keyring::new(&[], Some(&key)).unwrap();
    let ours = Checkpoint::sign(&key, 5, [1; 32], Utc::now());
    let mut stored = vec![Ok(ours.clone()), Err("malformed".to_owned())];
    for position in 0..UNTRUSTED_NAMED_MAX as i64 + 3 {
        stored.push(Ok(Checkpoint::sign(
            &stranger,
            position,
            [2; 32],
            Utc::now(),
        )));
    }
    let sorted = keyring.sort(stored.clone());
    assert_eq!(sorted.trusted, std::slice::from_ref(&ours));
    assert_eq!(sorted.untrusted, UNTRUSTED_NAMED_MAX + 4);
    assert_eq!(sorted.named.len(), UNTRUSTED_NAMED_MAX);
    assert_eq!(sorted.named[0], "malformed");
    assert_eq!(sorted.newest_of(&ours.key_id), Some(&ours));
    assert_eq!(sorted.newest_of(&key_id(&stranger.verifying_key())), None);
    // Without any key, nothing is trusted.
    let keyless = Keyring::default().sort(stored);
    assert!(keyless.trusted.is_empty() && keyless.newest().is_none());
    assert_eq!(keyless.untrusted, UNTRUSTED_NAMED_MAX + 5);
}
