"""The OpenAPI 3 description of the HTTP API, served at ``GET /v1/openapi.json``.

``tests/integration/test_node_api.py`` checks that every route the node serves is
described here and every path described here is served.
"""

from __future__ import annotations

_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "object", "required": ["code", "message"],
                             "properties": {"code": {"type": "string"}, "message": {"type": "string"}}}},
}


def _errors(*statuses: int) -> dict:
    text = {400: "malformed input", 401: "unsigned, unknown client, bad signature or stale request",
            403: "the caller's role does not allow this", 404: "not found", 408: "the body did not arrive in time",
            409: "replayed request",
            413: "body too large", 415: "unsupported media type", 429: "rate limited or client quota full",
            503: "the node is busy: retry after Retry-After seconds"}
    return {str(s): {"description": text[s], "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
            for s in statuses}


_SIGNED = [{"evledgerSignature": []}]
_CODE = {"name": "code", "in": "path", "required": True, "schema": {"type": "string"},
         "description": "deposit code, e.g. EV-XXXXX-XXXXX-XXXXX-XXXXX-XXXXX (case-insensitive, hyphens and spaces ignored)"}
_DEPOSIT_VIEW = {
    "type": "object",
    "required": ["code", "digest", "category", "deposited_at", "height", "depositor", "state"],
    "properties": {
        "code": {"type": "string"}, "digest": {"type": "string", "description": "SHA-256, hex"},
        "sm3": {"type": ["string", "null"]}, "category": {"type": "string"}, "case": {"type": ["string", "null"]},
        "deposited_at": {"type": ["string", "null"], "description": "block time, RFC 3339 UTC"},
        "deposited_at_ms": {"type": ["integer", "null"]},
        "height": {"type": ["integer", "null"]}, "depositor": {"type": "string"},
        "depositor_name": {"type": "string"}, "state": {"type": "string", "enum": ["pending", "committed"]},
        "public_meta": {"type": "object"},
    },
}

OPENAPI = {
    "openapi": "3.0.3",
    "info": {"title": "evledger node API", "version": "1",
             "description": "Evidence ledger node. Errors are JSON {\"error\": {\"code\", \"message\"}}. "
                            "Signed requests carry X-Evledger-Client, -Time, -Nonce and -Signature (docs/auth.md)."},
    "components": {
        "schemas": {"Error": _ERROR, "DepositView": _DEPOSIT_VIEW},
        "securitySchemes": {"evledgerSignature": {"type": "apiKey", "in": "header", "name": "X-Evledger-Signature",
                                                  "description": "Ed25519 signed request, see docs/auth.md"}},
    },
    "paths": {
        "/v1/status": {"get": {"summary": "Node status", "responses": {
            "200": {"description": "status", "content": {"application/json": {"schema": {
                "type": "object", "required": ["node", "role", "chain_id", "height", "view", "primary",
                                               "last_block_hash"]}}}},
            **_errors(429)}}},
        "/v1/deposits": {"post": {
            "summary": "Submit deposits (signed depositor)", "security": _SIGNED,
            "requestBody": {"required": True, "content": {
                "application/msgpack": {"schema": {"type": "string", "format": "binary"},
                                        "description": "encode([\"deposit-request\", 1, [entry_record_wire...]])"},
                "application/json": {"schema": {"type": "object", "properties": {
                    "records": {"type": "array", "items": {"type": "string", "format": "byte"}}}}}}},
            "responses": {
                "200": {"description": "every deposit is already committed"},
                "202": {"description": "accepted: one {code, digest, state, height} per item"},
                **_errors(400, 401, 403, 408, 409, 413, 415, 429, 503)}}},
        "/v1/deposits/{code}": {"get": {
            "summary": "Public view of a deposit (a signed court, procuratorate, arbitration body or notary also "
                       "gets its private metadata, and the lookup is recorded on chain)",
            "parameters": [_CODE, {
                "name": "wait_ms", "in": "query", "schema": {"type": "integer", "minimum": 0, "maximum": 30000},
                "description": "wait up to this long for the code to commit on this node, then answer as it stands "
                               "(pending, committed or 404); 0 or absent answers at once"}],
            "responses": {"200": {"description": "the record", "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/DepositView"}}}},
                **_errors(400, 401, 403, 404, 409, 429, 503)}}},
        "/v1/verify": {"post": {
            "summary": "One-click retrieval: does a digest match a deposit code?",
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "required": ["code", "digest"],
                "properties": {"code": {"type": "string"}, "digest": {"type": "string"}}}}}},
            "responses": {"200": {"description": "{match, code, height, deposited_at, depositor, category}"},
                          **_errors(400, 404, 408, 415, 429)}}},
        "/v1/receipts/{code}": {"get": {
            "summary": "The self-contained receipt of a committed deposit (docs/receipt.md); verifies offline "
                       "with only genesis.json", "parameters": [_CODE],
            "responses": {"200": {"description": "evledger-receipt/1 JSON document"}, **_errors(400, 404, 429)}}},
        "/v1/genesis.json": {"get": {"summary": "The consortium's genesis document (public)",
                                     "responses": {"200": {"description": "evledger-genesis/1"}, **_errors(429)}}},
        "/v1/blocks/{height}": {"get": {
            "summary": "A block with its commit certificate (signed member)", "security": _SIGNED,
            "parameters": [{"name": "height", "in": "path", "required": True, "schema": {"type": "integer"}}],
            "responses": {"200": {"description": "header, entries, certificate"}, **_errors(400, 401, 404, 409)}}},
        "/v1/cases/{case}/deposits": {"get": {
            "summary": "Every deposit filed under a case, full records (signed court, procuratorate, arbitration or "
                       "notary); the retrieval is recorded on chain as an access record",
            "security": _SIGNED,
            "parameters": [{"name": "case", "in": "path", "required": True, "schema": {"type": "string"}},
                           {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1,
                                                                        "maximum": 1000}},
                           {"name": "after", "in": "query", "schema": {"type": "string"},
                            "description": "the last code of the previous page"}],
            "responses": {"200": {"description": "{case, deposits: [full records], next, access_record}"},
                          **_errors(400, 401, 403, 409)}}},
        "/v1/openapi.json": {"get": {"summary": "This document", "responses": {"200": {"description": "OpenAPI 3"}}}},
        "/": {"get": {"summary": "The litigant's verification page (zh, with an English switch): checks a deposit "
                                 "code as typed, hashes the file in the browser, verifies the receipt in the "
                                 "browser", "responses": {"200": {"description": "text/html"}}}},
        "/assets/{name}": {"get": {"summary": "The page's scripts, styles and fonts (an allow-list)",
                                   "parameters": [{"name": "name", "in": "path", "required": True,
                                                   "schema": {"type": "string"}}],
                                   "responses": {"200": {"description": "the asset"}, **_errors(404)}}},
        "/metrics": {"get": {"summary": "Prometheus metrics (loopback, or signed by a node key)",
                             "responses": {"200": {"description": "text format 0.0.4"}, **_errors(401, 403)}}},
    },
}
