//! A file on disk larger than the limit is refused before it is read.

use std::time::{Duration, Instant};

use jiuzhu_formats::{
    read_invoices_file, read_invoices_partitioned_file, read_spells_file, read_spells_file_with,
    read_spells_partitioned_file, ReadOptions, DEFAULT_MAX_INPUT_BYTES,
};

#[test]
fn a_file_over_the_default_limit_is_refused_at_once_with_its_size() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("huge.csv");
    // Sparse: two gigabytes that take no room on disk and would take long
    // to read.
    std::fs::File::create(&path)
        .unwrap()
        .set_len(2_000_000_000)
        .unwrap();
    let started = Instant::now();
    let problems = read_spells_file(&path, "huge.csv", None).unwrap_err();
    assert_eq!(
        problems.to_string(),
        "huge.csv: is 1.8 GiB (2000000000 bytes), more than the 1 GiB (1073741824 bytes) allowed: split it into \
         smaller files\n"
    );
    let known = vec!["outpatient".to_owned(), "inpatient".to_owned()];
    assert_eq!(
        read_invoices_file(&path, "huge.csv", &known).unwrap_err(),
        problems
    );
    let options = ReadOptions::default();
    assert_eq!(options.max_bytes, DEFAULT_MAX_INPUT_BYTES);
    assert_eq!(
        read_spells_partitioned_file(&path, "huge.csv", None, &options).unwrap_err(),
        problems
    );
    assert_eq!(
        read_invoices_partitioned_file(&path, "huge.csv", &known, &options).unwrap_err(),
        problems
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn another_limit_can_be_chosen() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("spells.csv");
    let text = "person_id,category,valid_from\n11010519491231002X,DB,2024-01-01\n";
    std::fs::write(&path, text).unwrap();
    let size = text.len() as u64;
    let read = |max_bytes| read_spells_file_with(&path, "spells.csv", None, &ReadOptions { max_bytes });
    assert_eq!(read(size).unwrap().len(), 1);
    assert_eq!(
        read(size - 1).unwrap_err().to_string(),
        format!(
            "spells.csv: is {size} bytes, more than the {} bytes allowed: split it into smaller files\n",
            size - 1
        )
    );
}
