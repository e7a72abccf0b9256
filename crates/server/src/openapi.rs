//! The OpenAPI 3.1 document of every route the server serves, written by
//! hand. A test checks it against [`crate::served_routes`].

use jiuzhu_formats::feed_json::SPELL_FIELDS;
use jiuzhu_formats::json::INVOICE_FIELDS;
use jiuzhu_store::{DECISIONS_PAGE_DEFAULT, DECISIONS_PAGE_MAX, INSURANCE_SETTLEMENT_DEPARTMENT};
use serde_json::{json, Map, Value};

/// The document served at `GET /api/v1/openapi.json`.
pub(crate) fn document() -> Value {
    let mut document = base_document();
    if let Some(paths) = document["paths"].as_object_mut() {
        paths.extend(application_paths());
    }
    document["components"]["securitySchemes"]["staffToken"] = json!({
        "type": "http",
        "scheme": "bearer",
        "description": "A member of staff's token (`jiuzhu staff add NAME --roles reviewer,...`), as \
            `Authorization: Bearer <token>`. Opens the application routes only, each as the roles allow."
    });
    if let Some(schemas) = document["components"]["schemas"].as_object_mut() {
        schemas.insert("Application".into(), application_schema());
        schemas.insert("ApplicationSummary".into(), application_summary());
    }
    if let Some(codes) =
        document["components"]["schemas"]["Error"]["properties"]["error"]["enum"].as_array_mut()
    {
        codes.push(json!("refused"));
    }
    document
}

fn base_document() -> Value {
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Jiuzhu settlement API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Real-time settlement of medical financial assistance (医疗救助) for hospital \
                systems (`/api/v1/settlements`), and data sharing with the departments that report \
                recipients and with the insurance settlement system (`/api/v1/feeds`). Each hospital and \
                each department authenticates with its own API key as a bearer token; a hospital's key \
                opens only the settlement routes, a department's only the feed routes. Money is always \
                a JSON string with two decimals at most (\"1234.56\"), never a number. A refused request \
                is answered with an error body (`error`, `message`, `fields`)."
        },
        "security": [{ "apiKey": [] }],
        "paths": {
            "/api/v1/settlements": {
                "post": {
                    "operationId": "settle",
                    "summary": "Settle one invoice in real time",
                    "description": "The same invoice number with the same body is answered as the \
                        first time (with the header `Jiuzhu-Replayed: true`) and changes nothing; with a \
                        different body it is refused with 409.",
                    "requestBody": {
                        "required": true,
                        "content": { "application/json": { "schema": reference("SettlementRequest") } }
                    },
                    "responses": {
                        "200": {
                            "description": "The decision.",
                            "headers": {
                                "Jiuzhu-Replayed": {
                                    "description": "`true` when this answers a repeated request.",
                                    "schema": { "type": "string", "enum": ["true"] }
                                }
                            },
                            "content": { "application/json": { "schema": reference("SettlementResponse") } }
                        },
                        "400": error("The body is not a JSON object of invoice fields; `fields` has one entry with `line` and `column`."),
                        "401": error_reference("Unauthorized"),
                        "403": error("The invoice names another hospital than the API key's."),
                        "409": error("The invoice number was already settled with a different body; nothing changed."),
                        "413": error("The body is larger than the server's limit."),
                        "422": error("Some fields are invalid (each is named in `fields`), or the visit type is not one the policy knows (`visit_type`)."),
                        "500": error_reference("Internal"),
                        "503": error("No policy is in force, or the request took too long (send it again).")
                    }
                }
            },
            "/api/v1/settlements/{invoice_no}": {
                "get": {
                    "operationId": "getSettlement",
                    "summary": "Read back a settlement of the caller's hospital",
                    "parameters": [invoice_no_parameter()],
                    "responses": {
                        "200": {
                            "description": "The settlement as answered, and whether it was reversed.",
                            "content": { "application/json": { "schema": reference("StoredSettlement") } }
                        },
                        "401": error_reference("Unauthorized"),
                        "404": error_reference("NotFound"),
                        "500": error_reference("Internal")
                    }
                }
            },
            "/api/v1/settlements/{invoice_no}/reversal": {
                "post": {
                    "operationId": "reverseSettlement",
                    "summary": "Reverse a settlement the hospital cancelled (冲正)",
                    "description": "The person's yearly counters give back the amount and the deductible \
                        the settlement used. No request body.",
                    "parameters": [invoice_no_parameter()],
                    "responses": {
                        "200": {
                            "description": "The settlement, now reversed.",
                            "content": { "application/json": { "schema": reference("StoredSettlement") } }
                        },
                        "401": error_reference("Unauthorized"),
                        "404": error_reference("NotFound"),
                        "409": error("The settlement was already reversed."),
                        "500": error_reference("Internal")
                    }
                }
            },
            "/api/v1/feeds/spells": {
                "post": {
                    "operationId": "pushSpells",
                    "summary": "Import a department's spells (身份认定期间)",
                    "description": "The body is a department's spells file: the `spells.csv` of formats.md \
                        (`Content-Type: text/csv`, UTF-8 or GBK), an XLSX workbook whose first sheet has the \
                        same columns, or JSON (`application/json`, `SpellsBody`). The spells' source is the \
                        key's department: a row's `source` must be that department or empty. The rows are \
                        imported as `jiuzhu import spells` imports a file: each spell is added, supersedes a \
                        stored one (changed, ended) or is found unchanged, and persons with a bill stored whose \
                        past changed are marked for recomputation. The same body from the same department again is already \
                        imported (the SHA-256 of the body's bytes) and changes nothing. Any bad row refuses \
                        the whole body with 422, every problem listed with its line (for JSON, the row's \
                        1-based position in `rows`) and column, and nothing is stored. A large body may take \
                        longer than the server's time limit: the import then still completes, and the same \
                        body sent again answers `already_imported`.",
                    "parameters": [file_name_parameter()],
                    "requestBody": {
                        "required": true,
                        "content": {
                            "application/json": { "schema": reference("SpellsBody") },
                            "text/csv": { "schema": { "type": "string", "description": "spells.csv of formats.md" } },
                            XLSX: { "schema": { "type": "string", "format": "binary" } }
                        }
                    },
                    "responses": {
                        "200": {
                            "description": "What the import did.",
                            "content": { "application/json": { "schema": reference("SpellsReport") } }
                        },
                        "400": error("The JSON body is not an object with `rows` (one entry with `line` and `column` where the parser stopped), or `file_name` is not valid."),
                        "401": error_reference("DepartmentUnauthorized"),
                        "413": error("The body is larger than the server's limit for feeds."),
                        "415": error("The Content-Type is not application/json, text/csv or an XLSX workbook's."),
                        "422": error_reference("Refused"),
                        "500": error_reference("Internal"),
                        "503": error("No policy is in force, or the request took too long (the import completes; send the same body again).")
                    }
                }
            },
            "/api/v1/feeds/invoices": {
                "post": {
                    "operationId": "pushInvoices",
                    "summary": "Import the insurance feed: bills settled without real-time assistance (免申即享)",
                    "description": format!("Only a key of the department `{INSURANCE_SETTLEMENT_DEPARTMENT}` (the \
                        insurance settlement system) may send bills; any other department's key is refused \
                        with 403 before the body is read. The body is an `invoices.csv` of formats.md \
                        (`text/csv`, UTF-8 or GBK), an XLSX workbook, or JSON (`InvoicesBody`: each row the \
                        body of a settlement request). It is checked whole, then decided in canonical order \
                        and stored as `jiuzhu import invoices` does: each bill gets a decision the bill's \
                        hospital reads back through `GET /api/v1/settlements/{{invoice_no}}`. A bill already \
                        stored the same (by real-time settlement or an earlier feed) is not decided again, so \
                        the same body sent twice changes nothing the second time. A bad row, a visit type the \
                        policy in force does not map, or a bill stored before with other details refuses the \
                        whole body with 422, every problem with its line, and nothing is stored."),
                    "parameters": [file_name_parameter()],
                    "requestBody": {
                        "required": true,
                        "content": {
                            "application/json": { "schema": reference("InvoicesBody") },
                            "text/csv": { "schema": { "type": "string", "description": "invoices.csv of formats.md" } },
                            XLSX: { "schema": { "type": "string", "format": "binary" } }
                        }
                    },
                    "responses": {
                        "200": {
                            "description": "What the import did.",
                            "content": { "application/json": { "schema": reference("InvoicesReport") } }
                        },
                        "400": error("The JSON body is not an object with `rows`, or `file_name` is not valid."),
                        "401": error_reference("DepartmentUnauthorized"),
                        "403": error("The key is not the insurance settlement system's."),
                        "413": error("The body is larger than the server's limit for feeds."),
                        "415": error("The Content-Type is not application/json, text/csv or an XLSX workbook's."),
                        "422": error_reference("Refused"),
                        "500": error_reference("Internal"),
                        "503": error("No policy is in force, or the request took too long (decided bills stay stored; send the same body again to decide the rest).")
                    }
                }
            },
            "/api/v1/feeds/decisions": {
                "get": {
                    "operationId": "sharedDecisions",
                    "summary": "The decisions about the persons the department reported, a page at a time",
                    "description": "Decisions and reversals (冲正) of bills of every person who has at least \
                        one spell, current or superseded, whose source is the key's department; nobody else's. \
                        Oldest first. Start without `since`, then send each answer's `next_cursor` as `since`: \
                        every decision comes exactly once, also while new ones are being written (a decision \
                        written after a page was read comes in a later page). With `has_more` false, the \
                        department has everything so far; ask again later with the last `next_cursor`. Each \
                        item carries the person's full resident ID, as the department reported it. Every page \
                        read is recorded in the audit log. Payments are not shared yet: disbursement is not \
                        built; amounts are what assistance decided to pay.",
                    "parameters": [
                        {
                            "name": "since",
                            "in": "query",
                            "required": false,
                            "description": "The `next_cursor` of the previous page; absent for the first page.",
                            "schema": { "type": "string" }
                        },
                        {
                            "name": "limit",
                            "in": "query",
                            "required": false,
                            "description": "Decisions per page.",
                            "schema": { "type": "integer", "minimum": 1, "maximum": DECISIONS_PAGE_MAX, "default": DECISIONS_PAGE_DEFAULT }
                        }
                    ],
                    "responses": {
                        "200": {
                            "description": "A page of decisions.",
                            "content": { "application/json": { "schema": reference("DecisionsPage") } }
                        },
                        "400": error("`since` is not a cursor this API returned, or `limit` is out of range."),
                        "401": error_reference("DepartmentUnauthorized"),
                        "500": error_reference("Internal")
                    }
                }
            },
            "/api/v1/openapi.json": {
                "get": {
                    "operationId": "openapi",
                    "summary": "This document",
                    "security": [],
                    "responses": {
                        "200": {
                            "description": "The OpenAPI document.",
                            "content": { "application/json": { "schema": { "type": "object" } } }
                        }
                    }
                }
            },
            "/healthz": {
                "get": {
                    "operationId": "health",
                    "summary": "Whether the server and its database answer",
                    "security": [],
                    "responses": {
                        "200": text("`ok`."),
                        "503": text("`unavailable`: the database did not answer.")
                    }
                }
            },
            "/metrics": {
                "get": {
                    "operationId": "metrics",
                    "summary": "Counters and latency in Prometheus' text format",
                    "security": [],
                    "responses": {
                        "200": text("`jiuzhu_settlements_total{outcome=…}`, `jiuzhu_settlement_refusals_total{status=…}`, `jiuzhu_settlement_replays_total`, `jiuzhu_reversals_total` and the histogram `jiuzhu_settlement_seconds`.")
                    }
                }
            }
        },
        "components": {
            "securitySchemes": {
                "apiKey": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "The hospital's API key (`jiuzhu apikey create --hospital CODE`) or the \
                        department's (`jiuzhu apikey create --department NAME`), as `Authorization: Bearer <key>`."
                }
            },
            "responses": {
                "Unauthorized": {
                    "description": "The API key is missing or not known.",
                    "headers": { "WWW-Authenticate": { "schema": { "type": "string" } } },
                    "content": { "application/json": { "schema": reference("Error") } }
                },
                "DepartmentUnauthorized": {
                    "description": "The API key is missing or not a department's (a hospital's key is not).",
                    "headers": { "WWW-Authenticate": { "schema": { "type": "string" } } },
                    "content": { "application/json": { "schema": reference("Error") } }
                },
                "Refused": {
                    "description": "Rows of the body are not valid, or refuse it as a whole: nothing was \
                        stored. `fields` lists every problem (up to 100, then one entry counting the rest): \
                        `line` is the line of the file (for JSON, the row's 1-based position in `rows`; left \
                        out for a problem of the whole body) and `field` the column at fault (null for the \
                        row or the body as a whole).",
                    "content": { "application/json": { "schema": reference("Error") } }
                },
                "NotFound": {
                    "description": "No settlement of this invoice number by the caller's hospital.",
                    "content": { "application/json": { "schema": reference("Error") } }
                },
                "Internal": {
                    "description": "The server failed; the body is generic and the cause is logged.",
                    "content": { "application/json": { "schema": reference("Error") } }
                }
            },
            "schemas": {
                "SettlementRequest": settlement_request(),
                "SettlementResponse": settlement_response(),
                "Explanation": explanation(),
                "SpellsBody": rows_body("SpellRow"),
                "SpellRow": spell_row(),
                "InvoicesBody": rows_body("SettlementRequest"),
                "SpellsReport": spells_report(),
                "InvoicesReport": invoices_report(),
                "DecisionsPage": decisions_page(),
                "SharedDecision": shared_decision(),
                "StoredSettlement": {
                    "allOf": [
                        reference("SettlementResponse"),
                        {
                            "type": "object",
                            "required": ["reversed"],
                            "properties": { "reversed": { "type": "boolean" } }
                        }
                    ]
                },
                "Error": {
                    "type": "object",
                    "required": ["error", "message", "fields"],
                    "properties": {
                        "error": {
                            "type": "string",
                            "enum": ["invalid_request", "unauthorized", "other_hospital", "forbidden", "not_found",
                                     "conflict", "already_reversed", "payload_too_large", "unsupported_media_type",
                                     "no_policy", "timeout", "internal"]
                        },
                        "message": { "type": "string", "description": "A summary for people." },
                        "fields": { "type": "array", "items": reference("FieldError") }
                    }
                },
                "FieldError": {
                    "type": "object",
                    "required": ["field", "message"],
                    "properties": {
                        "field": {
                            "type": ["string", "null"],
                            "description": "The key at fault; null when the body as a whole is."
                        },
                        "message": { "type": "string" },
                        "line": { "type": "integer", "minimum": 1, "description": "For a body that is not a JSON object, where the parser stopped; for a file's problem, its line." },
                        "column": { "type": "integer", "minimum": 1 }
                    }
                }
            }
        }
    })
}

fn reference(schema: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{schema}") })
}

fn error_reference(response: &str) -> Value {
    json!({ "$ref": format!("#/components/responses/{response}") })
}

fn error(description: &str) -> Value {
    json!({
        "description": description,
        "content": { "application/json": { "schema": reference("Error") } }
    })
}

fn text(description: &str) -> Value {
    json!({
        "description": description,
        "content": { "text/plain": { "schema": { "type": "string" } } }
    })
}

fn invoice_no_parameter() -> Value {
    json!({
        "name": "invoice_no",
        "in": "path",
        "required": true,
        "schema": { "type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$" }
    })
}

/// The media type of an XLSX workbook.
const XLSX: &str = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";

fn file_name_parameter() -> Value {
    json!({
        "name": "file_name",
        "in": "query",
        "required": false,
        "description": "What the import is recorded as (1 to 255 characters); a JSON body's own `file_name` \
            comes first. By default `spells.csv`, `invoices.json`, … after the body's type.",
        "schema": { "type": "string" }
    })
}

fn rows_body(row: &str) -> Value {
    json!({
        "type": "object",
        "required": ["rows"],
        "additionalProperties": false,
        "properties": {
            "file_name": { "type": "string", "description": "What the import is recorded as." },
            "rows": {
                "type": "array",
                "description": "The rows of the file, in order; a problem names a row by its 1-based position here, as `line`.",
                "items": reference(row)
            }
        }
    })
}

fn spell_row() -> Value {
    let descriptions = [
        "The resident ID number (18 characters, GB 11643).",
        "A category code of the policy in force.",
        "First day, YYYY-MM-DD.",
        "Last day, inclusive, YYYY-MM-DD; missing, null or empty: open.",
        "The department: the key's, or missing, null or empty.",
    ];
    let mut properties = Map::new();
    for (index, (field, description)) in SPELL_FIELDS.iter().zip(descriptions).enumerate() {
        let kind = if index < 3 {
            json!("string")
        } else {
            json!(["string", "null"])
        };
        properties.insert(
            (*field).to_owned(),
            json!({ "type": kind, "description": description }),
        );
    }
    json!({
        "type": "object",
        "description": "A row of spells.csv (formats.md), every value a JSON string in the CSV's format.",
        "required": &SPELL_FIELDS[..3],
        "additionalProperties": false,
        "properties": properties
    })
}

fn count() -> Value {
    json!({ "type": "integer", "minimum": 0 })
}

fn spells_report() -> Value {
    json!({
        "type": "object",
        "required": ["file_name", "source", "rows", "added", "changed", "unchanged", "duplicates", "new_persons",
                     "changed_persons", "ended_persons", "marked", "already_imported", "import_id", "earlier"],
        "properties": {
            "file_name": { "type": "string" },
            "source": { "type": "string", "description": "The key's department." },
            "rows": count(),
            "added": count(),
            "changed": count(),
            "unchanged": count(),
            "duplicates": { "type": "integer", "minimum": 0, "description": "Rows identical to an earlier row, counted once." },
            "new_persons": { "type": "integer", "minimum": 0, "description": "Persons whose first spell this was (救助新增)." },
            "changed_persons": count(),
            "ended_persons": count(),
            "marked": { "type": "integer", "minimum": 0, "description": "Persons marked for recomputation." },
            "already_imported": { "type": "boolean", "description": "The same body from the same department was imported before: nothing changed and the counts are 0." },
            "import_id": { "type": ["integer", "null"], "description": "This import's record, or the earlier one's." },
            "earlier": {
                "type": ["object", "null"],
                "description": "When already imported: that import.",
                "properties": {
                    "file_name": { "type": "string" },
                    "imported_at": { "type": "string" },
                    "imported_by": { "type": "string" }
                }
            }
        }
    })
}

fn invoices_report() -> Value {
    json!({
        "type": "object",
        "required": ["file_name", "rows", "decided", "outcomes", "amount", "persons_assisted", "already_decided",
                     "duplicates", "refused", "transactions"],
        "properties": {
            "file_name": { "type": "string" },
            "rows": count(),
            "decided": { "type": "integer", "minimum": 0, "description": "Bills decided and stored now." },
            "outcomes": {
                "type": "object",
                "properties": { "assisted": count(), "capped": count(), "not_eligible": count(), "no_rule": count() }
            },
            "amount": { "type": "string", "pattern": "^[0-9]+\\.[0-9]{2}$", "description": "Granted to the bills decided now, yuan." },
            "persons_assisted": count(),
            "already_decided": { "type": "integer", "minimum": 0, "description": "Bills stored before, the same: not decided again." },
            "duplicates": {
                "type": "array",
                "description": "Lines repeating a bill of the body (every field but settled_at the same): not stored again.",
                "items": {
                    "type": "object",
                    "properties": { "invoice_no": { "type": "string" }, "line": count(), "first_line": count() }
                }
            },
            "refused": {
                "type": "array",
                "description": "Bills not stored because another channel stored a different bill under the number meanwhile; every other bill was.",
                "items": reference("FieldError")
            },
            "transactions": count()
        }
    })
}

fn decisions_page() -> Value {
    json!({
        "type": "object",
        "required": ["decisions", "next_cursor", "has_more"],
        "properties": {
            "decisions": { "type": "array", "items": reference("SharedDecision") },
            "next_cursor": { "type": "string", "description": "Opaque: send it as `since` for the next page." },
            "has_more": { "type": "boolean", "description": "More decisions were already there after this page." }
        }
    })
}

fn shared_decision() -> Value {
    json!({
        "type": "object",
        "description": "A row of results.csv (formats.md) with the same names and values, where an empty column \
            is null, and what it was, where and when.",
        "required": ["kind", "invoice_no", "person_id", "year", "category", "pool", "base", "deductible_applied",
                     "eligible", "amount", "outcome", "policy_version", "hospital", "service_date", "decided_at"],
        "properties": {
            "kind": { "type": "string", "enum": ["decision", "reversal"], "description": "A reversal (冲正) cancels the decision of the same invoice_no; its amounts are those given back." },
            "invoice_no": { "type": "string" },
            "person_id": { "type": "string", "description": "The full resident ID, canonical (upper-case X)." },
            "year": { "type": "integer" },
            "category": nullable_string(),
            "pool": nullable_string(),
            "base": money(),
            "deductible_applied": money(),
            "eligible": money(),
            "amount": money(),
            "outcome": { "type": "string", "enum": ["assisted", "capped", "duplicate", "not_eligible", "no_rule"] },
            "policy_version": nullable_string(),
            "hospital": { "type": "string" },
            "service_date": { "type": "string" },
            "decided_at": { "type": "string", "description": "RFC 3339, UTC: when decided, or reversed." }
        }
    })
}

const MONEY: &str = "^[0-9]+(\\.[0-9]{1,2})?$";

fn settlement_request() -> Value {
    let descriptions = [
        "The hospital's bill number: A-Z, a-z, 0-9, '-' and '_', at most 64.",
        "The patient's resident ID number (18 characters, GB 11643).",
        "The hospital's code; it must be the API key's hospital.",
        "A visit type of the policy in force (e.g. inpatient, outpatient).",
        "YYYY-MM-DD.",
        "RFC 3339 with an offset, e.g. 2024-03-06T10:22:31+08:00.",
        "Total of the bill, yuan.",
        "Paid by basic medical insurance, yuan.",
        "In-scope self-pay, yuan.",
        "Out-of-scope self-pay, yuan; the four amounts add up: total = the other three.",
    ];
    let mut properties = Map::new();
    for (field, description) in INVOICE_FIELDS.iter().zip(descriptions) {
        let mut schema = json!({ "type": "string", "description": description });
        if matches!(
            *field,
            "total" | "fund_paid" | "in_scope_self_pay" | "out_of_scope_self_pay"
        ) {
            schema["pattern"] = json!(MONEY);
        }
        properties.insert((*field).to_owned(), schema);
    }
    json!({
        "type": "object",
        "required": INVOICE_FIELDS,
        "additionalProperties": false,
        "properties": properties
    })
}

fn settlement_response() -> Value {
    json!({
        "type": "object",
        "description": "A row of results.csv without person_id, and the steps of the decision.",
        "required": ["invoice_no", "year", "category", "pool", "base", "deductible_applied", "eligible",
                     "amount", "outcome", "policy_version", "explanation"],
        "properties": {
            "invoice_no": { "type": "string" },
            "year": { "type": "integer" },
            "category": nullable_string(),
            "pool": nullable_string(),
            "base": money(),
            "deductible_applied": money(),
            "eligible": money(),
            "amount": money(),
            "outcome": { "type": "string", "enum": ["assisted", "capped", "duplicate", "not_eligible", "no_rule"] },
            "policy_version": nullable_string(),
            "explanation": reference("Explanation")
        }
    })
}

fn explanation() -> Value {
    json!({
        "type": "object",
        "properties": {
            "category_code": nullable_string(),
            "category_name": nullable_string(),
            "rank": { "type": ["integer", "null"] },
            "policy_version": nullable_string(),
            "pool": nullable_string(),
            "deductible": nullable_money(),
            "ratio": nullable_string(),
            "out_of_scope_self_pay": money(),
            "out_of_scope_ratio": nullable_string(),
            "raw_in_scope": money(),
            "raw_out_of_scope": money(),
            "raw": money(),
            "pool_cap": nullable_money(),
            "pool_cap_room": nullable_money(),
            "annual_cap": nullable_money(),
            "annual_cap_room": nullable_money(),
            "text": { "type": "array", "items": { "type": "string" } }
        }
    })
}

fn money() -> Value {
    json!({ "type": "string", "pattern": "^-?[0-9]+\\.[0-9]{2}$" })
}

fn nullable_money() -> Value {
    json!({ "type": ["string", "null"], "pattern": "^-?[0-9]+\\.[0-9]{2}$" })
}

fn nullable_string() -> Value {
    json!({ "type": ["string", "null"] })
}

/// The application routes (救助申请, 智能受理, 救助审核), authenticated by a
/// member of staff's token.
fn application_paths() -> Map<String, Value> {
    let staff = json!([{ "staffToken": [] }]);
    let object = |properties: Value, required: &[&str]| json!({ "type": "object", "required": required, "additionalProperties": false, "properties": properties });
    let body =
        |schema: Value| json!({ "required": true, "content": { "application/json": { "schema": schema } } });
    let answer = |description: &str, schema: Value| json!({ "description": description, "content": { "application/json": { "schema": schema } } });
    let id = json!({ "name": "id", "in": "path", "required": true, "schema": { "type": "integer" } });
    let unauthorized =
        error("The staff token is missing or not known (a hospital's or a department's key is not one).");
    let forbidden = error("The caller's roles do not allow this, or the reviewer entered the application.");
    let paths = json!({
        "/api/v1/commitment-letter": { "get": {
            "operationId": "commitmentLetter",
            "summary": "The current commitment letter (告知承诺书)",
            "security": [],
            "responses": {
                "200": answer("The letter: `version`, `text`, `sha256` (of the text, what a signature records), `published_at`.",
                    json!({ "type": "object" })),
                "404": error("No letter is published yet.")
            }
        }},
        "/api/v1/commitment-signatures": { "post": {
            "operationId": "signLetter",
            "summary": "Record that a person signed the current letter",
            "security": staff,
            "requestBody": body(object(json!({
                "person_id": { "type": "string" },
                "sha256": { "type": "string", "description": "The SHA-256 of the text the person read, hex." },
                "channel": { "type": "string", "enum": ["web", "phone", "counter"], "default": "counter" }
            }), &["person_id", "sha256"])),
            "responses": {
                "200": answer("The signature: `person` (masked), `version`, `sha256`, `channel`, `signed_at`.", json!({ "type": "object" })),
                "400": error("A field is missing or invalid, or the store knows nothing of the person."),
                "401": unauthorized,
                "409": error("No letter is published, or the hash is not the current letter's."),
                "500": error_reference("Internal")
            }
        }},
        "/api/v1/applications/prefill": { "post": {
            "operationId": "applicationPrefill",
            "summary": "What the bureau knows of a person, to prefill an application (a logged read)",
            "security": staff,
            "requestBody": body(object(json!({ "person_id": { "type": "string" } }), &["person_id"])),
            "responses": {
                "200": answer("`person` (masked), `spells`, `letter`, `signed_current_letter`, `bank_account` (masked), `bills`, `applications`.", json!({ "type": "object" })),
                "400": error("`person_id` is missing or invalid."),
                "401": unauthorized,
                "500": error_reference("Internal")
            }
        }},
        "/api/v1/applications": {
            "post": {
                "operationId": "submitApplication",
                "summary": "Submit an application, checked at once by smart acceptance",
                "description": "`person_id` and `bills`, each with the invoice fields (but `person_id`) and an \
                    optional `scan` (`media_type` image/jpeg, image/png or application/pdf, `content_base64`). \
                    Every check's result is stored; a clean application is decided at once (`decided`), any \
                    finding sends it to a reviewer (`needs_review`).",
                "security": staff,
                "requestBody": body(json!({ "type": "object" })),
                "responses": {
                    "201": answer("The application as stored.", reference("Application")),
                    "400": error("The body is not JSON."),
                    "401": unauthorized,
                    "409": error("The person has not signed the current commitment letter."),
                    "413": error("The body is larger than the limit."),
                    "422": error("Fields are invalid, each named by its path (`bills[1].service_date`)."),
                    "500": error_reference("Internal"),
                    "503": error("No policy is in force.")
                }
            },
            "get": {
                "operationId": "reviewQueue",
                "summary": "The applications waiting for review, oldest first (reviewers)",
                "security": staff,
                "parameters": [{ "name": "state", "in": "query", "schema": { "type": "string", "enum": ["needs_review"] } }],
                "responses": {
                    "200": answer("`applications`: summaries.", json!({ "type": "object", "properties": {
                        "applications": { "type": "array", "items": reference("ApplicationSummary") } } })),
                    "400": error("An unknown `state`."),
                    "401": unauthorized,
                    "403": forbidden,
                    "500": error_reference("Internal")
                }
            }
        },
        "/api/v1/applications/{id}": { "get": {
            "operationId": "application",
            "summary": "An application with its bills, checks and history (reviewers, auditors; a logged read)",
            "security": staff,
            "parameters": [id, { "name": "purpose", "in": "query", "schema": { "type": "string" } }],
            "responses": {
                "200": answer("The application.", reference("Application")),
                "401": unauthorized,
                "403": forbidden,
                "404": error("No such application."),
                "500": error_reference("Internal")
            }
        }},
        "/api/v1/applications/{id}/bills/{line}/scan": { "get": {
            "operationId": "applicationScan",
            "summary": "The scan of one bill (reviewers, auditors)",
            "security": staff,
            "parameters": [id, { "name": "line", "in": "path", "required": true, "schema": { "type": "integer" } }],
            "responses": {
                "200": { "description": "The scan, with its media type." },
                "401": unauthorized,
                "403": forbidden,
                "404": error("No such application, bill or scan."),
                "500": error_reference("Internal")
            }
        }},
        "/api/v1/applications/{id}/review": { "post": {
            "operationId": "reviewApplication",
            "summary": "Approve or reject an application waiting for review (reviewers, not its enterer)",
            "security": staff,
            "parameters": [id],
            "requestBody": body(object(json!({
                "verdict": { "type": "string", "enum": ["approve", "reject"] },
                "reason": { "type": "string" }
            }), &["verdict", "reason"])),
            "responses": {
                "200": answer("The application after the verdict: approved, its pending bills decided.", reference("Application")),
                "400": error("A missing verdict or reason."),
                "401": unauthorized,
                "403": forbidden,
                "404": error("No such application."),
                "409": error("The application is not waiting for review, or every bill of it is excluded."),
                "500": error_reference("Internal")
            }
        }}
    });
    match paths {
        Value::Object(paths) => paths,
        _ => Map::new(),
    }
}

fn application_summary() -> Value {
    json!({
        "type": "object",
        "required": ["id", "person", "state", "channel", "entered_by", "submitted_at", "bills", "findings"],
        "properties": {
            "id": { "type": "integer" },
            "person": { "type": "string", "description": "The resident ID, masked." },
            "state": { "type": "string", "enum": ["needs_review", "approved", "rejected", "decided", "paid"] },
            "channel": { "type": "string", "enum": ["web", "phone", "counter"] },
            "entered_by": { "type": "string" },
            "submitted_at": { "type": "string" },
            "bills": { "type": "integer" },
            "findings": { "type": "integer", "description": "Checks that did not pass." },
            "in_scope_self_pay": money()
        }
    })
}

fn application_schema() -> Value {
    json!({
        "allOf": [reference("ApplicationSummary"), {
            "type": "object",
            "properties": {
                "bills": { "type": "array", "items": { "type": "object", "description": "line, the invoice fields, scan (media_type, bytes, sha256), status (pending, decided, excluded, rejected), outcome and amount once decided." } },
                "checks": { "type": "array", "items": { "type": "object", "required": ["line", "check", "passed", "detail"], "properties": {
                    "line": { "type": "integer" },
                    "check": { "type": "string", "enum": ["amounts_add_up", "visit_type_known", "not_decided", "not_applied", "no_suspected_duplicate", "eligible", "within_deadline"] },
                    "passed": { "type": "boolean" },
                    "detail": { "type": "string" }
                } } },
                "events": { "type": "array", "items": { "type": "object", "properties": {
                    "state": { "type": "string", "enum": ["submitted", "accepted", "needs_review", "approved", "rejected", "decided", "paid"] },
                    "at": { "type": "string" }, "actor": { "type": "string" }, "reason": { "type": ["string", "null"] }
                } } }
            }
        }]
    })
}
