package api

import (
	"bytes"
	"errors"
	"net/http"
	"strconv"

	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/report"
	"github.com/portcullis/portcullis/scanner"
	"github.com/portcullis/portcullis/store"
)

// Media types of the documents the scan endpoints serve.
const (
	mediaCycloneDX = "application/vnd.cyclonedx+json"
	mediaSPDX      = "application/spdx+json"
	mediaSARIF     = "application/sarif+json"
)

// doneScan reads the finished scan of raw (a digest) with its inventory,
// or answers why there is none and reports false.
func (h *Handler) doneScan(w http.ResponseWriter, req request, raw string) (store.ScanRecord, bool) {
	d, err := digest.Parse(raw)
	if err != nil {
		writeCodedError(w, http.StatusBadRequest, "BAD_DIGEST", "invalid digest "+quote(raw)+": "+err.Error())
		return store.ScanRecord{}, false
	}
	rec, err := h.Scans.Scan(req.r.Context(), d.String())
	switch {
	case errors.Is(err, store.ErrNotFound):
		writeError(w, http.StatusNotFound, "no scan of "+d.String()+" yet: pull it through the mirror, or POST /api/v1/scans?image=REF")
		return rec, false
	case err != nil:
		h.internalError(w, req, "read scan "+d.String(), err)
		return rec, false
	case rec.State != store.ScanDone:
		writeCodedError(w, http.StatusConflict, "NOT_SCANNED", "the scan of "+d.String()+" is "+rec.State+", not done")
		return rec, false
	case rec.Inventory == nil:
		writeCodedError(w, http.StatusConflict, "NO_INVENTORY", "the scan of "+d.String()+" holds no inventory (written by an older version); POST /api/v1/scans?image=REF to scan it again")
		return rec, false
	}
	h.markStale(&rec)
	return rec, true
}

// getSBOM answers GET /api/v1/scans/{digest}/sbom?format=cyclonedx|spdx.
// The document is written whole to memory first: a failure midway is a
// clean error, never half a document.
func (h *Handler) getSBOM(w http.ResponseWriter, req request, raw string) {
	format := req.r.URL.Query().Get("format")
	if format != "" && format != "cyclonedx" && format != "spdx" {
		writeError(w, http.StatusBadRequest, "invalid ?format="+quote(format)+": want cyclonedx or spdx")
		return
	}
	rec, ok := h.doneScan(w, req, raw)
	if !ok {
		return
	}
	var buf bytes.Buffer
	mediaType, err := mediaCycloneDX, error(nil)
	if format == "spdx" {
		mediaType, err = mediaSPDX, scanner.WriteSPDX(&buf, rec.Inventory)
	} else {
		err = scanner.WriteCycloneDX(&buf, rec.Inventory, rec.Findings)
	}
	if err != nil {
		h.internalError(w, req, "write "+format+" SBOM of "+rec.Digest, err)
		return
	}
	writeDocument(w, mediaType, buf.Bytes())
}

// getReport answers GET /api/v1/scans/{digest}/report?format=sarif.
func (h *Handler) getReport(w http.ResponseWriter, req request, raw string) {
	if format := req.r.URL.Query().Get("format"); format != "" && format != "sarif" {
		writeError(w, http.StatusBadRequest, "invalid ?format="+quote(format)+": want sarif")
		return
	}
	rec, ok := h.doneScan(w, req, raw)
	if !ok {
		return
	}
	image := rec.Digest
	if rec.Upstream != "" {
		image = rec.Upstream + "/" + rec.Repository + "@" + rec.Digest
	}
	var buf bytes.Buffer
	res := report.Result{Image: image, Inventory: rec.Inventory, Findings: rec.Findings, DBVersion: rec.DBVersion}
	if err := report.SARIF(&buf, res, rec.ScannerVersion); err != nil {
		h.internalError(w, req, "write SARIF report of "+rec.Digest, err)
		return
	}
	writeDocument(w, mediaSARIF, buf.Bytes())
}

func writeDocument(w http.ResponseWriter, mediaType string, body []byte) {
	w.Header().Set("Content-Type", mediaType)
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
}
