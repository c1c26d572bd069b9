// Package vex reads OpenVEX documents and removes from a scan's findings
// those a supplier states do not affect the image.
//
// Both the v0.2.0 context (https://openvex.dev/ns/v0.2.0) and the older
// unversioned one (https://openvex.dev/ns) are read; they differ only in
// details this package tolerates either way (products as objects or plain
// strings, vulnerability as an object or a plain name).
package vex

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Bounds on one document: VEX comes from files anyone can attach to a
// public image, so every list and string it feeds is limited.
const (
	MaxDocumentBytes = 4 << 20
	MaxStatements    = 10_000
	MaxProducts      = 1_000 // per statement
	MaxSubcomponents = 1_000 // per product
	MaxAliases       = 100   // per vulnerability
	MaxIdentifiers   = 32    // per product
	MaxStringLength  = 4096
)

// Statuses a statement can give.
const (
	StatusNotAffected        = "not_affected"
	StatusAffected           = "affected"
	StatusFixed              = "fixed"
	StatusUnderInvestigation = "under_investigation"
)

// Document is one parsed OpenVEX document.
type Document struct {
	ID         string
	Context    string
	Timestamp  time.Time
	Statements []Statement
}

// Statement is one OpenVEX statement, its timestamp defaulted to the
// document's.
type Statement struct {
	Vulnerability   string   // name, else @id
	Aliases         []string // the vulnerability's aliases (and its @id when a name is given)
	Products        []Product
	Status          string
	Justification   string
	ImpactStatement string
	Timestamp       time.Time
}

// Product is what a statement is about: an image (purl pkg:oci/… with a
// digest, or a bare digest) and optionally the packages inside it.
type Product struct {
	ID            string   // @id as written
	Identifiers   []string // purl, and other identifiers as written
	Subcomponents []string // purls
}

var errTooLarge = errors.New("document too large")

// Parse reads one OpenVEX document. Malformed or oversized input is an
// error naming what is wrong, never a partial document.
func Parse(data []byte) (*Document, error) {
	if len(data) > MaxDocumentBytes {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", errTooLarge, len(data), MaxDocumentBytes)
	}
	var raw rawDocument
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&raw); err != nil {
		return nil, fmt.Errorf("parse OpenVEX JSON: %w", err)
	}
	if dec.More() {
		return nil, errors.New("parse OpenVEX JSON: trailing data after the document")
	}
	if !IsContext(raw.Context) {
		return nil, fmt.Errorf("@context %q is not OpenVEX (want https://openvex.dev/ns or https://openvex.dev/ns/v…)", clip(raw.Context))
	}
	if len(raw.Statements) > MaxStatements {
		return nil, fmt.Errorf("%d statements, limit %d", len(raw.Statements), MaxStatements)
	}
	doc := &Document{ID: raw.ID, Context: raw.Context}
	if err := checkLen("@id", raw.ID); err != nil {
		return nil, err
	}
	if raw.Timestamp != "" {
		t, err := parseTime(raw.Timestamp)
		if err != nil {
			return nil, fmt.Errorf("document timestamp: %w", err)
		}
		doc.Timestamp = t
	}
	for i, rs := range raw.Statements {
		s, err := statement(rs, doc.Timestamp)
		if err != nil {
			return nil, fmt.Errorf("statements[%d]: %w", i, err)
		}
		doc.Statements = append(doc.Statements, s)
	}
	return doc, nil
}

// IsContext reports whether an @context (or in-toto predicate type) is
// OpenVEX's.
func IsContext(c string) bool {
	return c == "https://openvex.dev/ns" || strings.HasPrefix(c, "https://openvex.dev/ns/v")
}

type rawDocument struct {
	Context    string         `json:"@context"`
	ID         string         `json:"@id"`
	Timestamp  string         `json:"timestamp"`
	Statements []rawStatement `json:"statements"`
}

type rawStatement struct {
	Vulnerability   json.RawMessage   `json:"vulnerability"`
	Products        []json.RawMessage `json:"products"`
	Status          string            `json:"status"`
	Justification   string            `json:"justification"`
	ImpactStatement string            `json:"impact_statement"`
	Timestamp       string            `json:"timestamp"`
}

type rawVulnerability struct {
	ID      string   `json:"@id"`
	Name    string   `json:"name"`
	Aliases []string `json:"aliases"`
}

type rawProduct struct {
	ID            string            `json:"@id"`
	Identifiers   map[string]string `json:"identifiers"`
	Subcomponents []json.RawMessage `json:"subcomponents"`
}

func statement(rs rawStatement, docTime time.Time) (Statement, error) {
	s := Statement{Status: rs.Status, Justification: rs.Justification, ImpactStatement: rs.ImpactStatement, Timestamp: docTime}
	switch s.Status {
	case StatusNotAffected, StatusAffected, StatusFixed, StatusUnderInvestigation:
	default:
		return s, fmt.Errorf("unknown status %q", clip(s.Status))
	}
	for name, v := range map[string]string{"justification": s.Justification, "impact_statement": s.ImpactStatement} {
		if err := checkLen(name, v); err != nil {
			return s, err
		}
	}
	if rs.Timestamp != "" {
		t, err := parseTime(rs.Timestamp)
		if err != nil {
			return s, fmt.Errorf("timestamp: %w", err)
		}
		s.Timestamp = t
	}
	if err := s.readVulnerability(rs.Vulnerability); err != nil {
		return s, err
	}
	if len(rs.Products) == 0 {
		return s, errors.New("no products")
	}
	if len(rs.Products) > MaxProducts {
		return s, fmt.Errorf("%d products, limit %d", len(rs.Products), MaxProducts)
	}
	for i, rp := range rs.Products {
		p, err := product(rp, false)
		if err != nil {
			return s, fmt.Errorf("products[%d]: %w", i, err)
		}
		s.Products = append(s.Products, p)
	}
	return s, nil
}

func (s *Statement) readVulnerability(raw json.RawMessage) error {
	var name string
	if json.Unmarshal(raw, &name) == nil {
		// The older format names the vulnerability with a plain string.
		s.Vulnerability = name
	} else {
		var v rawVulnerability
		if err := json.Unmarshal(raw, &v); err != nil {
			return fmt.Errorf("vulnerability: want a name or an object: %w", err)
		}
		if len(v.Aliases) > MaxAliases {
			return fmt.Errorf("vulnerability: %d aliases, limit %d", len(v.Aliases), MaxAliases)
		}
		s.Vulnerability = v.Name
		if s.Vulnerability == "" {
			s.Vulnerability = v.ID
		} else if v.ID != "" {
			s.Aliases = append(s.Aliases, v.ID)
		}
		s.Aliases = append(s.Aliases, v.Aliases...)
	}
	if s.Vulnerability == "" {
		return errors.New("vulnerability: no name or @id")
	}
	for _, a := range append([]string{s.Vulnerability}, s.Aliases...) {
		if err := checkLen("vulnerability", a); err != nil {
			return err
		}
	}
	return nil
}

// product reads a statement's product, or (sub) one of its
// subcomponents, whose own subcomponents are not read: nesting is not
// recursed into.
func product(raw json.RawMessage, sub bool) (Product, error) {
	var p Product
	var id string
	if json.Unmarshal(raw, &id) == nil {
		p.ID = id
	} else {
		var rp rawProduct
		if err := json.Unmarshal(raw, &rp); err != nil {
			return p, fmt.Errorf("want an @id or an object: %w", err)
		}
		if len(rp.Identifiers) > MaxIdentifiers {
			return p, fmt.Errorf("%d identifiers, limit %d", len(rp.Identifiers), MaxIdentifiers)
		}
		if len(rp.Subcomponents) > MaxSubcomponents {
			return p, fmt.Errorf("%d subcomponents, limit %d", len(rp.Subcomponents), MaxSubcomponents)
		}
		p.ID = rp.ID
		for _, v := range rp.Identifiers {
			p.Identifiers = append(p.Identifiers, v)
		}
		for i, rc := range rp.Subcomponents {
			if sub {
				break
			}
			sub, err := product(rc, true)
			if err != nil {
				return p, fmt.Errorf("subcomponents[%d]: %w", i, err)
			}
			// A subcomponent names a package by its @id or identifiers.
			p.Subcomponents = append(p.Subcomponents, append([]string{sub.ID}, sub.Identifiers...)...)
		}
	}
	if p.ID == "" && len(p.Identifiers) == 0 {
		return p, errors.New("no @id or identifiers")
	}
	for _, s := range append(append([]string{p.ID}, p.Identifiers...), p.Subcomponents...) {
		if err := checkLen("product", s); err != nil {
			return p, err
		}
	}
	return p, nil
}

func parseTime(s string) (time.Time, error) {
	if len(s) > 64 {
		return time.Time{}, fmt.Errorf("%d characters is no timestamp", len(s))
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("want RFC 3339, got %q", s)
	}
	return t, nil
}

func checkLen(what, s string) error {
	if len(s) > MaxStringLength {
		return fmt.Errorf("%s: %d characters, limit %d", what, len(s), MaxStringLength)
	}
	return nil
}

// clip shortens hostile text quoted in an error.
func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}
