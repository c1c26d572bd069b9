package alerts

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/portcullis/portcullis/pipeline"
	"github.com/portcullis/portcullis/store"
)

// Document is an alert in the json format, and the data of a CloudEvent.
type Document struct {
	ID   string    `json:"id"`
	Type string    `json:"type"` // the alert kind: block, warn, verdict_change, …
	Time time.Time `json:"time"`
	// Verdict alerts: the image as registry/repository:tag@digest.
	Image      string                 `json:"image,omitempty"`
	Digest     string                 `json:"digest,omitempty"`
	Upstream   string                 `json:"upstream,omitempty"`
	Repository string                 `json:"repository,omitempty"`
	Tag        string                 `json:"tag,omitempty"`
	Rule       string                 `json:"rule,omitempty"`
	From       string                 `json:"from,omitempty"`
	Verdict    string                 `json:"verdict,omitempty"`
	Reasons    []pipeline.EventReason `json:"reasons,omitempty"`
	// DetailsURL is absolute with public_url configured, else the path.
	DetailsURL string `json:"detailsUrl,omitempty"`
	// newly_vulnerable: the images an update made fail.
	Images     []Image `json:"images,omitempty"`
	MoreImages int     `json:"moreImages,omitempty"`
	// Database alerts (and newly_vulnerable): the database in force.
	DBVersion string    `json:"dbVersion,omitempty"`
	DBBuiltAt time.Time `json:"dbBuiltAt,omitzero"`
	MaxDBAge  string    `json:"maxDBAge,omitempty"`
	// audit: the record, and the one-line sentence the Slack text says.
	Audit   *store.AuditRecord `json:"audit,omitempty"`
	Summary string             `json:"summary,omitempty"`
}

// Image is one image of a newly_vulnerable alert.
type Image struct {
	Image      string                 `json:"image"`
	Digest     string                 `json:"digest"`
	Upstream   string                 `json:"upstream"`
	Repository string                 `json:"repository"`
	Tag        string                 `json:"tag,omitempty"`
	Rule       string                 `json:"rule,omitempty"`
	Reasons    []pipeline.EventReason `json:"reasons,omitempty"`
	DetailsURL string                 `json:"detailsUrl"`
}

// imageName writes registry/repository:tag@digest.
func imageName(upstream, repo, tag, digest string) string {
	s := upstream + "/" + repo
	if tag != "" {
		s += ":" + tag
	}
	return s + "@" + digest
}

func (a *Alerter) detailsURL(digest string) string {
	return a.o.PublicURL + "/api/v1/scans/" + digest
}

// document builds the json document of an alert.
func (a *Alerter) document(al alert) Document {
	e := al.event
	doc := Document{ID: e.ID + "-" + al.kind, Type: al.kind, Time: e.At.UTC(), DBVersion: e.DBVersion, DBBuiltAt: e.DBBuiltAt, MaxDBAge: e.MaxDBAge}
	switch al.kind {
	case KindBlock, KindWarn, KindVerdictChange:
		doc.Image = imageName(e.Upstream, e.Repository, e.Tag, e.Digest)
		doc.Digest, doc.Upstream, doc.Repository, doc.Tag, doc.Rule = e.Digest, e.Upstream, e.Repository, e.Tag, e.Rule
		doc.From, doc.Verdict, doc.Reasons = e.From, e.To, e.Causes
		doc.DetailsURL = a.detailsURL(e.Digest)
	case KindNewlyVulnerable:
		for _, im := range e.Images {
			doc.Images = append(doc.Images, Image{Image: imageName(im.Upstream, im.Repository, im.Tag, im.Digest), Digest: im.Digest,
				Upstream: im.Upstream, Repository: im.Repository, Tag: im.Tag, Rule: im.Rule, Reasons: im.Causes, DetailsURL: a.detailsURL(im.Digest)})
		}
		doc.MoreImages = e.MoreImages
	case KindAudit:
		doc.Audit, doc.Digest, doc.Summary = e.Audit, e.Digest, auditSentence(*e.Audit)
		if e.Digest != "" {
			doc.DetailsURL = a.detailsURL(e.Digest)
		}
	}
	return doc
}

// cloudEvent is a CloudEvents 1.0 event in the structured JSON mode
// (https://github.com/cloudevents/spec/blob/v1.0.2/cloudevents/formats/json-format.md).
type cloudEvent struct {
	SpecVersion     string    `json:"specversion"`
	ID              string    `json:"id"`
	Source          string    `json:"source"`
	Type            string    `json:"type"`
	Subject         string    `json:"subject,omitempty"`
	Time            time.Time `json:"time"`
	DataContentType string    `json:"datacontenttype"`
	Data            Document  `json:"data"`
}

// CloudEventType is the CloudEvents type of an alert kind.
func CloudEventType(kind string) string { return "dev.portcullis.alert." + kind }

func contentType(format string) string {
	if format == FormatCloudEvents {
		return "application/cloudevents+json; charset=utf-8"
	}
	return "application/json"
}

// render encodes al in h's format.
func (a *Alerter) render(h *hook, al alert) (delivery, error) {
	doc := a.document(al)
	var v any = doc
	switch h.Format {
	case FormatCloudEvents:
		v = cloudEvent{SpecVersion: "1.0", ID: doc.ID, Source: a.o.Source, Type: CloudEventType(al.kind),
			Subject: cmpOr(doc.Image, doc.DBVersion, auditSubject(doc.Audit)), Time: doc.Time, DataContentType: "application/json", Data: doc}
	case FormatSlack:
		v = slackMessage(doc)
	}
	body, err := json.Marshal(v)
	if err != nil {
		return delivery{}, fmt.Errorf("encode %s alert: %w", h.Format, err)
	}
	return delivery{kind: al.kind, id: doc.ID, body: body}, nil
}

func cmpOr(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

// Slack incoming-webhook message: text (the notification and fallback)
// and Block Kit blocks (https://api.slack.com/reference/block-kit/blocks).
type slackMsg struct {
	Text   string       `json:"text"`
	Blocks []slackBlock `json:"blocks"`
}

type slackBlock struct {
	Type     string      `json:"type"` // header, section, context
	Text     *slackText  `json:"text,omitempty"`
	Elements []slackText `json:"elements,omitempty"`
}

type slackText struct {
	Type string `json:"type"` // plain_text or mrkdwn
	Text string `json:"text"`
}

// Slack's limits: a header's text 150 characters, a section's 3000, 50
// blocks per message; the notification text is kept short too.
const (
	slackHeaderMax  = 150
	slackSectionMax = 3000
	slackMaxBlocks  = 50
	slackTextMax    = 1000
)

func slackMessage(doc Document) slackMsg {
	var title, text string
	var sections []string
	switch doc.Type {
	case KindBlock, KindWarn, KindVerdictChange:
		verb := map[string]string{"block": "Blocked", "warn": "Warning on", "allow": "Allowed"}[doc.Verdict]
		if doc.Type == KindVerdictChange {
			verb = fmt.Sprintf("Verdict %s → %s for", cmpOr(doc.From, "none"), doc.Verdict)
		}
		title = fmt.Sprintf("Portcullis: %s %s/%s", verb, doc.Repository, cmpOr(doc.Tag, shortDigest(doc.Digest)))
		text = fmt.Sprintf("%s %s (rule %s)", verb, doc.Image, doc.Rule)
		if len(doc.Reasons) > 0 {
			text += ": " + doc.Reasons[0].Message
		}
		sections = append(sections, fmt.Sprintf("*Image* `%s`\n*Rule* %s\n*Verdict* %s", esc(doc.Image), esc(doc.Rule), verdictLine(doc)))
		for _, r := range doc.Reasons {
			sections = append(sections, reasonText(r))
		}
		sections = append(sections, "*Details* "+link(doc.DetailsURL))
	case KindNewlyVulnerable:
		n := len(doc.Images) + doc.MoreImages
		title = fmt.Sprintf("Portcullis: %d cached %s newly vulnerable", n, plural(n, "image", "images"))
		text = fmt.Sprintf("A vulnerability database update (%s) makes %d cached %s fail policy", doc.DBVersion, n, plural(n, "image", "images"))
		for _, im := range doc.Images {
			s := fmt.Sprintf("*Image* `%s` (rule %s)", esc(im.Image), esc(im.Rule))
			for _, r := range im.Reasons {
				s += "\n" + reasonText(r)
			}
			sections = append(sections, s+"\n"+link(im.DetailsURL))
		}
		if doc.MoreImages > 0 {
			sections = append(sections, fmt.Sprintf("+%d more images", doc.MoreImages))
		}
	case KindDBStale:
		title = "Portcullis: vulnerability database is stale"
		text = fmt.Sprintf("Vulnerability database %s, built %s, is older than the policy's max_db_age %s", doc.DBVersion, doc.DBBuiltAt.Format(time.RFC3339), doc.MaxDBAge)
		sections = append(sections, esc(text))
	case KindAudit:
		title = "Portcullis: " + doc.Audit.Kind
		text = doc.Summary
		sections = append(sections, esc(text))
	case KindDBUpdated:
		title = "Portcullis: vulnerability database updated"
		text = fmt.Sprintf("Vulnerability database %s is in force (built %s)", doc.DBVersion, doc.DBBuiltAt.Format(time.RFC3339))
		sections = append(sections, esc(text))
	}
	msg := slackMsg{Text: cut(esc(text), slackTextMax)}
	msg.Blocks = append(msg.Blocks, slackBlock{Type: "header", Text: &slackText{Type: "plain_text", Text: cut(title, slackHeaderMax)}})
	// A header and a context block frame at most slackMaxBlocks-2 sections.
	if room := slackMaxBlocks - 2; len(sections) > room {
		sections = append(sections[:room-1], fmt.Sprintf("+%d more", len(sections)-room+1))
	}
	for _, s := range sections {
		msg.Blocks = append(msg.Blocks, slackBlock{Type: "section", Text: &slackText{Type: "mrkdwn", Text: cut(s, slackSectionMax)}})
	}
	msg.Blocks = append(msg.Blocks, slackBlock{Type: "context", Elements: []slackText{{Type: "mrkdwn", Text: "alert " + esc(doc.Type) + " · " + doc.Time.Format(time.RFC3339)}}})
	return msg
}

func verdictLine(doc Document) string {
	if doc.From == "" {
		return doc.Verdict
	}
	return doc.From + " → " + doc.Verdict
}

// reasonText writes a reason with its vulnerabilities, one per line:
// "CVE-2024-0001 openssl 3.0.1 → fixed in 3.0.8 (HIGH)".
func reasonText(r pipeline.EventReason) string {
	var b strings.Builder
	fmt.Fprintf(&b, "*%s* (%s): %s", esc(r.Code), esc(r.Verdict), esc(r.Message))
	for _, v := range r.Vulnerabilities {
		if v.Kind != "" {
			b.WriteString(findingLine(v))
			continue
		}
		fmt.Fprintf(&b, "\n• %s %s %s", esc(v.ID), esc(v.Package), esc(v.InstalledVersion))
		if len(v.FixedVersions) > 0 {
			fmt.Fprintf(&b, " → fixed in %s", esc(strings.Join(v.FixedVersions, ", ")))
		} else {
			b.WriteString(" (no fix)")
		}
		if v.Severity != "" {
			fmt.Fprintf(&b, " (%s)", esc(v.Severity))
		}
	}
	if r.MoreVulnerabilities > 0 {
		fmt.Fprintf(&b, "\n• +%d more", r.MoreVulnerabilities)
	}
	return b.String()
}

// findingLine writes a finding that is not a vulnerability, named by its
// id like a CVE: "• malicious package MAL-2025-191025 in npm package foo
// 1.0.0 (CRITICAL)", "• malware Eicar-Test-Signature in /tmp/x",
// "• secret/private-key in /app/.env". A secret is never more than its
// kind and place (an event does not hold its value).
func findingLine(v pipeline.EventVuln) string {
	var s string
	switch {
	case v.Kind == "malware" && v.Path == "":
		s = "malicious package " + v.ID + " in " + strings.TrimSpace(v.Ecosystem+" package "+v.Package+" "+v.InstalledVersion)
	case v.Kind == "malware":
		s = "malware " + v.ID + " in " + v.Path
	default:
		s = v.ID + " (" + v.Kind + ")"
		if v.Path != "" {
			s = v.ID + " in " + v.Path
		}
	}
	s = strings.Join(strings.Fields(s), " ") // hostile paths stay on one line
	if v.Severity != "" {
		s += " (" + v.Severity + ")"
	}
	return "\n• " + esc(s)
}

// link writes an absolute URL as a Slack link; a relative path (no
// public_url configured) stays text.
func link(u string) string {
	if strings.HasPrefix(u, "http://") || strings.HasPrefix(u, "https://") {
		return "<" + esc(u) + "|details>"
	}
	return "`" + esc(u) + "`"
}

// esc escapes Slack's control characters in text
// (https://api.slack.com/reference/surfaces/formatting#escaping).
func esc(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}

// cut keeps s within max characters (Slack counts characters), ending in
// "…" when cut.
func cut(s string, max int) string {
	if utf8.RuneCountInString(s) <= max {
		return s
	}
	r := []rune(s)
	return string(r[:max-1]) + "…"
}

func shortDigest(d string) string {
	if _, hex, ok := strings.Cut(d, ":"); ok && len(hex) > 12 {
		return d[:len(d)-len(hex)+12]
	}
	return d
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
