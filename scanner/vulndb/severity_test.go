package vulndb

import (
	"encoding/json"
	"testing"
)

func TestSeverity(t *testing.T) {
	const (
		v31High = "CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:N/I:H/A:H"                    // 7.4
		v30Crit = "CVSS:3.0/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"                    // 9.8
		v40Crit = "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N" // 9.3
		v31None = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:N"                    // 0.0
	)
	cases := []struct {
		name string
		rec  string // JSON of the record; the affected entry is npm "p"
		want severity
	}{
		{"cvss 3.1", `{"severity":[{"type":"CVSS_V3","score":"` + v31High + `"}]}`, severity{"HIGH", 7.4, v31High}},
		{"cvss 3.0", `{"severity":[{"type":"CVSS_V3","score":"` + v30Crit + `"}]}`, severity{"CRITICAL", 9.8, v30Crit}},
		{"cvss 4.0", `{"severity":[{"type":"CVSS_V4","score":"` + v40Crit + `"}]}`, severity{"CRITICAL", 9.3, v40Crit}},
		{"highest of v3 and v4", `{"severity":[{"type":"CVSS_V3","score":"` + v31High + `"},{"type":"CVSS_V4","score":"` + v40Crit + `"}]}`, severity{"CRITICAL", 9.3, v40Crit}},
		{"score 0 is LOW", `{"severity":[{"type":"CVSS_V3","score":"` + v31None + `"}]}`, severity{"LOW", 0, v31None}},
		{"vector wins over database word", `{"severity":[{"type":"CVSS_V3","score":"` + v31High + `"}],"database_specific":{"severity":"LOW"}}`, severity{"HIGH", 7.4, v31High}},
		{"GHSA MODERATE", `{"database_specific":{"severity":"MODERATE"}}`, severity{Level: "MEDIUM"}},
		{"broken vector falls back", `{"severity":[{"type":"CVSS_V3","score":"CVSS:3.1/AV:X"}],"database_specific":{"severity":"HIGH"}}`, severity{Level: "HIGH"}},
		{"affected-level vector", `{"affected_severity":[{"type":"CVSS_V3","score":"` + v30Crit + `"}],"severity":[{"type":"CVSS_V3","score":"` + v31High + `"}]}`, severity{"CRITICAL", 9.8, v30Crit}},
		{"ecosystem_specific word", `{"ecosystem_specific":{"severity":"critical"},"database_specific":{"severity":"LOW"}}`, severity{Level: "CRITICAL"}},
		{"ubuntu priority", `{"severity":[{"type":"Ubuntu","score":"negligible"}]}`, severity{Level: "LOW"}},
		{"cvss v2 only", `{"severity":[{"type":"CVSS_V2","score":"AV:N/AC:L/Au:N/C:P/I:P/A:P"}]}`, severity{Level: "UNKNOWN"}},
		{"nothing", `{}`, severity{Level: "UNKNOWN"}},
		{"non-string word", `{"database_specific":{"severity":3}}`, severity{Level: "UNKNOWN"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var extra map[string]json.RawMessage
			if err := json.Unmarshal([]byte(c.rec), &extra); err != nil {
				t.Fatal(err)
			}
			aff := map[string]any{
				"package": map[string]string{"ecosystem": "npm", "name": "p"},
				"ranges":  []any{map[string]any{"type": "SEMVER", "events": []any{ev("introduced", "0")}}},
			}
			r := map[string]any{"id": "SEV-1"}
			for k, v := range extra {
				switch k {
				case "affected_severity":
					aff["severity"] = v
				case "ecosystem_specific":
					aff[k] = v
				default:
					r[k] = v
				}
			}
			r["affected"] = []any{aff}
			data, _ := json.Marshal(r)
			got, err := parseRecord(data)
			if err != nil {
				t.Fatal(err)
			}
			if s := got.Entries[0].Entry.Parts[0].Severity; s != c.want {
				t.Errorf("severity = %+v, want %+v", s, c.want)
			}
		})
	}
}
