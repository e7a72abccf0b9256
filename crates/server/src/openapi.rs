//! The OpenAPI 3.1 document of every route the server serves, written by
//! hand. A test checks it against [`crate::served_routes`].

use jiuzhu_formats::json::INVOICE_FIELDS;
use serde_json::{json, Map, Value};

/// The document served at `GET /api/v1/openapi.json`.
pub(crate) fn document() -> Value {
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Jiuzhu settlement API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Real-time settlement of medical financial assistance (医疗救助) for hospital \
                systems. Each hospital authenticates with its API key as a bearer token. Money is always \
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
                    "description": "The hospital's API key (`jiuzhu apikeys create HOSPITAL`), as `Authorization: Bearer <key>`."
                }
            },
            "responses": {
                "Unauthorized": {
                    "description": "The API key is missing or not known.",
                    "headers": { "WWW-Authenticate": { "schema": { "type": "string" } } },
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
                            "enum": ["invalid_request", "unauthorized", "other_hospital", "not_found", "conflict",
                                     "already_reversed", "payload_too_large", "no_policy", "timeout", "internal"]
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
                        "line": { "type": "integer", "minimum": 1, "description": "Only for a body that is not a JSON object." },
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
