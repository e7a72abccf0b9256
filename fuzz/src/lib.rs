//! What the fuzz targets share: the example policy, and a way to put
//! arbitrary bytes in a workbook as its first sheet, so that the XLSX
//! reader is reached beyond the ZIP layer (random bytes are almost never a
//! valid ZIP archive with a sound checksum).

use std::io::Write;
use std::sync::OnceLock;

use jiuzhu_core::Policy;

const EXAMPLE_POLICY: &str = include_str!("../../fixtures/example-policy.toml");

/// The example policy, parsed once.
pub fn policy() -> &'static Policy {
    static POLICY: OnceLock<Policy> = OnceLock::new();
    POLICY.get_or_init(|| {
        jiuzhu_formats::parse_policy("example-policy.toml", EXAMPLE_POLICY)
            .expect("the example policy is valid")
    })
}

/// The visit types of the example policy.
pub fn visit_types() -> &'static [String] {
    static VISIT_TYPES: OnceLock<Vec<String>> = OnceLock::new();
    VISIT_TYPES.get_or_init(|| {
        policy()
            .visit_types()
            .iter()
            .map(|(name, _)| name.clone())
            .collect()
    })
}

const CONTENT_TYPES: &str = r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" ContentType="application/xml"/><Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/><Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/><Override PartName="/xl/styles.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.styles+xml"/></Types>"#;

const PACKAGE_RELS: &str = r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="xl/workbook.xml"/></Relationships>"#;

const WORKBOOK: &str = r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"><sheets><sheet name="Sheet1" sheetId="1" r:id="rId1"/></sheets></workbook>"#;

const WORKBOOK_RELS: &str = r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" Target="worksheets/sheet1.xml"/><Relationship Id="rId2" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/styles" Target="styles.xml"/></Relationships>"#;

/// Style 0: general; 1: a date (`yyyy-mm-dd`); 2: a date and time; 3: a
/// duration.
const STYLES: &str = r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<styleSheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><numFmts count="3"><numFmt numFmtId="164" formatCode="yyyy\-mm\-dd"/><numFmt numFmtId="165" formatCode="yyyy\-mm\-dd\ hh:mm:ss"/><numFmt numFmtId="166" formatCode="[h]:mm:ss"/></numFmts><cellXfs count="4"><xf numFmtId="0"/><xf numFmtId="164" applyNumberFormat="1"/><xf numFmtId="165" applyNumberFormat="1"/><xf numFmtId="166" applyNumberFormat="1"/></cellXfs></styleSheet>"#;

/// A workbook (its parts stored, not compressed) whose first sheet's XML
/// is `sheet`.
pub fn workbook_with_sheet(sheet: &[u8]) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::with_capacity(sheet.len() + 4096));
    let mut writer = zip::ZipWriter::new(&mut out);
    let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    let parts: [(&str, &[u8]); 6] = [
        ("[Content_Types].xml", CONTENT_TYPES.as_bytes()),
        ("_rels/.rels", PACKAGE_RELS.as_bytes()),
        ("xl/workbook.xml", WORKBOOK.as_bytes()),
        ("xl/_rels/workbook.xml.rels", WORKBOOK_RELS.as_bytes()),
        ("xl/styles.xml", STYLES.as_bytes()),
        ("xl/worksheets/sheet1.xml", sheet),
    ];
    for (name, bytes) in parts {
        writer.start_file(name, options).expect("a part starts");
        writer.write_all(bytes).expect("a part is written");
    }
    writer.finish().expect("the archive is finished");
    out.into_inner()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed(path: &str) -> Vec<u8> {
        std::fs::read(format!("{}/corpus/{path}", env!("CARGO_MANIFEST_DIR"))).unwrap()
    }

    #[test]
    fn the_workbook_seeds_reach_the_row_checks() {
        let spells =
            jiuzhu_formats::read_spells_partitioned("s", &seed("spells/tiny.xlsx"), Some(policy())).unwrap();
        assert_eq!((spells.good.len(), spells.rejected.len()), (2, 1));
        let sheet = workbook_with_sheet(&seed("spells/sheet.xml"));
        let spells = jiuzhu_formats::read_spells_partitioned("s", &sheet, Some(policy())).unwrap();
        assert_eq!((spells.good.len(), spells.rejected.len()), (1, 2), "{spells:#?}");

        let invoices =
            jiuzhu_formats::read_invoices_partitioned("i", &seed("invoices/tiny.xlsx"), visit_types())
                .unwrap();
        assert_eq!(
            (invoices.good.len(), invoices.rejected.len()),
            (2, 0),
            "{invoices:#?}"
        );
        let sheet = workbook_with_sheet(&seed("invoices/sheet.xml"));
        let invoices = jiuzhu_formats::read_invoices_partitioned("i", &sheet, visit_types()).unwrap();
        assert_eq!(
            (invoices.good.len(), invoices.rejected.len()),
            (1, 1),
            "{invoices:#?}"
        );
    }
}
