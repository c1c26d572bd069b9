package pipeline

import (
	"context"
	"fmt"

	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/scanner/vulndb"
	"github.com/portcullis/portcullis/signing"
	"github.com/portcullis/portcullis/vex"
)

// VEXPredicateTypes are the in-toto predicate types of OpenVEX
// attestations: the first is what `cosign attest --type openvex` writes.
var VEXPredicateTypes = []string{"https://openvex.dev/ns", "https://openvex.dev/ns/v0.2.0"}

// maxVEXAttestations bounds the attached documents read per image.
const maxVEXAttestations = 16

// applyVEX removes from findings those the policy's VEX documents, and
// VEX attestations the rule's signature trust verifies (online only),
// say do not apply to image d. It returns what remains, what was
// suppressed, and notes for the record on VEX that was not honoured.
func (p *Pipeline) applyVEX(ctx context.Context, findings []vulndb.Finding, d, upstream, repo string, rule policy.Rule, online bool) ([]vulndb.Finding, []vex.Suppressed, []string) {
	sources := p.policy().VEXSources()
	var notes []string
	// The image is named by its own digest and by the indexes of the
	// repository that list it: suppliers publish (and attest) the index.
	digests := []string{d}
	if p.o.Store != nil { // 'policy test' judges without a store
		err := p.o.Store.Parents(ctx, upstream, repo, d, func(index string) bool {
			digests = append(digests, index)
			return len(digests) <= maxParentsChecked
		})
		if err != nil {
			notes = append(notes, "VEX: indexes listing "+d+" not read: "+err.Error())
		}
	}
	if online {
		for _, dd := range digests {
			attested, why := p.attestedVEX(ctx, dd, upstream, repo, rule)
			sources = append(sources[:len(sources):len(sources)], attested...)
			notes = append(notes, why...)
		}
	}
	if len(sources) == 0 {
		return findings, nil, notes
	}
	r := vex.Apply(sources, digests, findings)
	return r.Findings, r.Suppressed, append(notes, r.Notes...)
}

// attestedVEX reads the OpenVEX attestations of d (the image or an index
// listing it) in upstream/repo. Anyone
// can attach a document to a public image, so one counts only when it
// verifies with the rule's signature trust; without trust configured
// attachments are not even looked for.
func (p *Pipeline) attestedVEX(ctx context.Context, d, upstream, repo string, rule policy.Rule) ([]vex.Source, []string) {
	sr := rule.Signature
	if sr == nil || p.o.Registry == nil || (len(sr.Keys) == 0 && len(sr.Identities) == 0) {
		return nil, nil
	}
	reg := upstreamRegistry{reg: p.o.Registry, upstream: upstream}
	var trusts []signing.Trust
	if len(sr.Keys) > 0 {
		trusts = append(trusts, signing.Trust{Keys: sr.Keys, TrustedRoot: sr.TrustedRoot})
	}
	if len(sr.Identities) > 0 {
		ids := make([]signing.Identity, len(sr.Identities))
		for i, id := range sr.Identities {
			ids[i] = signing.Identity{Issuer: id.Issuer, IssuerRegexp: id.IssuerRegexp, Subject: id.Subject, SubjectRegexp: id.SubjectRegexp}
		}
		trusts = append(trusts, signing.Trust{Identities: ids, TrustedRoot: sr.TrustedRoot, RequireTlog: sr.RequireTlog})
	}
	var preds []signing.Predicate
	var results []signing.Result
	for _, t := range trusts {
		got, res := signing.VerifiedPredicates(ctx, reg, repo, d, t, VEXPredicateTypes)
		preds = append(preds, got...)
		results = append(results, res)
	}
	var sources []vex.Source
	var notes []string
	seen := map[string]bool{}
	for _, pr := range preds {
		if len(sources) == maxVEXAttestations {
			notes = append(notes, fmt.Sprintf("VEX attestations: only the first %d were read", maxVEXAttestations))
			break
		}
		if seen[string(pr.Body)] {
			continue // the same document in both formats
		}
		seen[string(pr.Body)] = true
		doc, err := vex.Parse(pr.Body)
		if err != nil {
			notes = append(notes, "VEX attestation ignored: "+err.Error())
			continue
		}
		sources = append(sources, vex.Source{Doc: doc, Origin: "attestation (" + signerName(pr.Signer) + ")"})
	}
	// A verified one beside ones that do not verify: the others are still
	// said to be ignored.
	for _, r := range results {
		switch r.State {
		case signing.StateInvalid:
			notes = append(notes, "VEX attestation ignored: not signed with the rule's signature trust: "+clipNote(r.Error))
		case signing.StateError:
			notes = append(notes, "VEX attestations could not be checked: "+clipNote(r.Error))
		}
	}
	return sources, notes
}

func signerName(s signing.Signer) string {
	if s.KeyID != "" {
		return "key " + s.KeyID
	}
	return s.Subject
}

func clipNote(s string) string {
	if len(s) > 300 {
		return s[:300] + "…"
	}
	return s
}
