package scanner

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

const (
	// maxArchiveEntries and maxMetadataSize bound what a hostile archive can
	// make us index or read into memory (manifests, configs, index.json).
	maxArchiveEntries = 1 << 20
	maxMetadataSize   = 8 << 20
	maxIndexDepth     = 4
)

// ImageFromArchive opens an image archive in place, without unpacking it:
// a docker-archive (docker save, crane pull, ggcr tarball.Write: a
// manifest.json listing config and layer files) or an OCI image layout packed
// in a tar (index.json and blobs/). Docker 25+ writes both; the OCI layout is
// preferred. If the archive holds several images, the first one is used: the
// first manifest of index.json (descending into a nested index), or the
// first entry of manifest.json.
//
// Layers are served as stored in the archive: a docker-archive layer stored
// uncompressed keeps its plain tar as the "compressed" form (the scanner
// recognises it), rather than being gzipped on the fly only to be
// decompressed again; its digest is then its diff ID, which is not
// verified here.
func ImageFromArchive(file string) (v1.Image, error) {
	a, err := indexArchive(file)
	if err != nil {
		return nil, fmt.Errorf("image archive %s: %w", file, err)
	}
	var img v1.Image
	switch {
	case a.has("index.json"):
		img, err = a.ociImage()
	case a.has("manifest.json"):
		img, err = a.dockerImage()
	default:
		err = errors.New("neither index.json (OCI layout) nor manifest.json (docker-archive) found")
	}
	if err != nil {
		return nil, fmt.Errorf("image archive %s: %w", file, err)
	}
	return img, nil
}

// archiveEntry locates one member's data inside the archive file.
type archiveEntry struct {
	offset, size int64
	typeflag     byte
	linkname     string
}

type imageArchive struct {
	file    string
	entries map[string]archiveEntry
}

// indexArchive records where each member's data starts, reading only the
// tar headers (data is skipped with Seek).
func indexArchive(file string) (*imageArchive, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	pr := &positionReader{rs: f}
	tr := tar.NewReader(pr)
	a := &imageArchive{file: file, entries: map[string]archiveEntry{}}
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("tar: %w", err)
		}
		if len(a.entries) >= maxArchiveEntries {
			return nil, fmt.Errorf("more than %d entries", maxArchiveEntries)
		}
		name, ok := cleanPath(hdr.Name)
		if !ok || name == "" || hdr.Size < 0 {
			continue
		}
		a.entries[name] = archiveEntry{offset: pr.pos, size: hdr.Size, typeflag: hdr.Typeflag, linkname: hdr.Linkname}
	}
	return a, nil
}

func (a *imageArchive) has(name string) bool {
	_, err := a.lookup(name)
	return err == nil
}

// lookup finds a regular file, following symlinks and hard links inside the
// archive (old docker save output links identical layer.tar files).
func (a *imageArchive) lookup(name string) (archiveEntry, error) {
	name, _ = cleanPath(name)
	for range maxSymlinkHops {
		e, ok := a.entries[name]
		if !ok {
			return archiveEntry{}, fmt.Errorf("%s: %w", name, os.ErrNotExist)
		}
		switch e.typeflag {
		case tar.TypeReg, '\x00':
			return e, nil
		case tar.TypeSymlink:
			name = resolveLink(name, e.linkname)
		case tar.TypeLink:
			name, _ = cleanPath(e.linkname)
		default:
			return archiveEntry{}, fmt.Errorf("%s is not a regular file", name)
		}
	}
	return archiveEntry{}, fmt.Errorf("%s: too many links", name)
}

// open returns a reader over one member; each call opens the archive again,
// so layers can be read independently and nothing stays open.
func (a *imageArchive) open(name string) (io.ReadCloser, int64, error) {
	e, err := a.lookup(name)
	if err != nil {
		return nil, 0, err
	}
	f, err := os.Open(a.file)
	if err != nil {
		return nil, 0, err
	}
	return sectionReadCloser{io.NewSectionReader(f, e.offset, e.size), f}, e.size, nil
}

func (a *imageArchive) readSmall(name string) ([]byte, error) {
	rc, size, err := a.open(name)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	if size > maxMetadataSize {
		return nil, fmt.Errorf("%s: %d bytes is too large for metadata", name, size)
	}
	return io.ReadAll(rc)
}

type sectionReadCloser struct {
	*io.SectionReader
	io.Closer
}

// positionReader tracks the offset in the file, so the index knows where
// each member's data begins once tar.Reader.Next has returned its header.
type positionReader struct {
	rs  io.ReadSeeker
	pos int64
}

func (p *positionReader) Read(b []byte) (int, error) {
	n, err := p.rs.Read(b)
	p.pos += int64(n)
	return n, err
}

func (p *positionReader) Seek(off int64, whence int) (int64, error) {
	n, err := p.rs.Seek(off, whence)
	if err == nil {
		p.pos = n
	}
	return n, err
}

// ociImage reads the first image of an OCI layout.
func (a *imageArchive) ociImage() (v1.Image, error) {
	raw, err := a.readSmall("index.json")
	if err != nil {
		return nil, err
	}
	for range maxIndexDepth {
		var idx v1.IndexManifest
		if err := json.Unmarshal(raw, &idx); err != nil {
			return nil, fmt.Errorf("parse index: %w", err)
		}
		if len(idx.Manifests) == 0 {
			return nil, errors.New("index lists no manifests")
		}
		desc := idx.Manifests[0]
		if raw, err = a.readSmall(blobPath(desc.Digest)); err != nil {
			return nil, fmt.Errorf("manifest %s: %w", desc.Digest, err)
		}
		if !isIndex(desc.MediaType, raw) {
			return a.imageFromManifest(raw, desc.MediaType)
		}
	}
	return nil, fmt.Errorf("indexes nested deeper than %d", maxIndexDepth)
}

// isIndex tells an index from an image manifest, by the descriptor's media
// type or, when a layout leaves it out, by the document itself.
func isIndex(mt types.MediaType, raw []byte) bool {
	if mt != "" {
		return mt.IsIndex()
	}
	var probe struct {
		MediaType types.MediaType `json:"mediaType"`
		Manifests json.RawMessage `json:"manifests"`
	}
	if json.Unmarshal(raw, &probe) != nil {
		return false
	}
	return probe.MediaType.IsIndex() || probe.Manifests != nil
}

func blobPath(h v1.Hash) string { return path.Join("blobs", h.Algorithm, h.Hex) }

func (a *imageArchive) imageFromManifest(raw []byte, mt types.MediaType) (v1.Image, error) {
	m, err := v1.ParseManifest(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("parse manifest: %w", err)
	}
	if m.MediaType != "" {
		mt = m.MediaType
	}
	cfg, c, err := a.config(blobPath(m.Config.Digest), "config "+m.Config.Digest.String(), len(m.Layers))
	if err != nil {
		return nil, err
	}
	layers := map[v1.Hash]*archiveLayer{}
	for i, l := range m.Layers {
		layers[l.Digest] = &archiveLayer{a: a, name: blobPath(l.Digest), digest: l.Digest, diffID: c.RootFS.DiffIDs[i], size: l.Size, mediaType: l.MediaType}
	}
	return partial.CompressedToImage(&archiveImage{manifest: raw, mediaType: mt, config: cfg, layers: layers})
}

// config reads and parses the image config stored at name and checks that
// it gives a diff ID for each of the manifest's layers (archiveLayer takes
// them from there). what prefixes a read error, as each layout names its
// config differently.
func (a *imageArchive) config(name, what string, layers int) ([]byte, *v1.ConfigFile, error) {
	raw, err := a.readSmall(name)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", what, err)
	}
	c, err := v1.ParseConfigFile(bytes.NewReader(raw))
	if err != nil {
		return nil, nil, fmt.Errorf("parse config: %w", err)
	}
	if len(c.RootFS.DiffIDs) != layers {
		return nil, nil, fmt.Errorf("config lists %d diff ids for %d layers", len(c.RootFS.DiffIDs), layers)
	}
	return raw, c, nil
}

// dockerManifestEntry is one image of a docker-archive's manifest.json.
type dockerManifestEntry struct {
	Config string
	Layers []string
}

// dockerImage reads the first image of a docker-archive and describes it
// with a manifest built from what the archive stores.
func (a *imageArchive) dockerImage() (v1.Image, error) {
	raw, err := a.readSmall("manifest.json")
	if err != nil {
		return nil, err
	}
	var entries []dockerManifestEntry
	if err := json.Unmarshal(raw, &entries); err != nil {
		return nil, fmt.Errorf("parse manifest.json: %w", err)
	}
	if len(entries) == 0 {
		return nil, errors.New("manifest.json lists no images")
	}
	e := entries[0]
	cfgRaw, cfg, err := a.config(e.Config, "config", len(e.Layers))
	if err != nil {
		return nil, err
	}
	layers := map[v1.Hash]*archiveLayer{}
	descs := make([]v1.Descriptor, 0, len(e.Layers))
	oci := false
	for i, name := range e.Layers {
		l, err := a.describeDockerLayer(name, cfg.RootFS.DiffIDs[i])
		if err != nil {
			return nil, fmt.Errorf("layer %s: %w", name, err)
		}
		oci = oci || l.mediaType == types.OCILayerZStd
		layers[l.digest] = l
		descs = append(descs, v1.Descriptor{MediaType: l.mediaType, Size: l.size, Digest: l.digest})
	}
	// Docker media types, as go-containerregistry's tarball package (and so
	// "crane push") describes the same archive: a gzip archive then has the
	// manifest digest it gets once pushed. zstd needs the OCI types.
	m := v1.Manifest{
		SchemaVersion: 2,
		MediaType:     types.DockerManifestSchema2,
		Config:        v1.Descriptor{MediaType: types.DockerConfigJSON, Size: int64(len(cfgRaw)), Digest: sha256Hash(cfgRaw)},
		Layers:        descs,
	}
	if oci {
		m.MediaType, m.Config.MediaType = types.OCIManifestSchema1, types.OCIConfigJSON
		for i := range m.Layers {
			m.Layers[i].MediaType = ociLayerType(m.Layers[i].MediaType)
			layers[m.Layers[i].Digest].mediaType = m.Layers[i].MediaType
		}
	}
	rawManifest, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	return partial.CompressedToImage(&archiveImage{manifest: rawManifest, mediaType: m.MediaType, config: cfgRaw, layers: layers})
}

// describeDockerLayer finds a layer's media type from its first bytes and
// its digest: the diff ID when stored uncompressed, else a hash of the
// stored bytes.
func (a *imageArchive) describeDockerLayer(name string, diffID v1.Hash) (*archiveLayer, error) {
	rc, size, err := a.open(name)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	var head [4]byte
	n, _ := io.ReadFull(rc, head[:])
	l := &archiveLayer{a: a, name: name, size: size, diffID: diffID}
	switch {
	case bytes.HasPrefix(head[:n], magicGzip):
		l.mediaType = types.DockerLayer
	case bytes.HasPrefix(head[:n], magicZstd):
		l.mediaType = types.OCILayerZStd
	default:
		l.mediaType = types.DockerUncompressedLayer
		l.digest = diffID
		return l, nil
	}
	h := sha256.New()
	h.Write(head[:n])
	if _, err := io.Copy(h, rc); err != nil {
		return nil, fmt.Errorf("hash: %w", err)
	}
	l.digest = v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(h.Sum(nil))}
	return l, nil
}

func ociLayerType(mt types.MediaType) types.MediaType {
	switch mt {
	case types.DockerLayer:
		return types.OCILayer
	case types.DockerUncompressedLayer:
		return types.OCIUncompressedLayer
	}
	return mt
}

func sha256Hash(b []byte) v1.Hash {
	sum := sha256.Sum256(b)
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}
}

// archiveImage is the partial.CompressedImageCore of an archived image.
type archiveImage struct {
	manifest  []byte
	mediaType types.MediaType
	config    []byte
	layers    map[v1.Hash]*archiveLayer
}

func (i *archiveImage) RawConfigFile() ([]byte, error)      { return i.config, nil }
func (i *archiveImage) MediaType() (types.MediaType, error) { return i.mediaType, nil }
func (i *archiveImage) RawManifest() ([]byte, error)        { return i.manifest, nil }

func (i *archiveImage) LayerByDigest(h v1.Hash) (partial.CompressedLayer, error) {
	if l, ok := i.layers[h]; ok {
		return l, nil
	}
	if h == sha256Hash(i.config) {
		return partial.ConfigLayer(i)
	}
	return nil, fmt.Errorf("blob %s: %w", h, os.ErrNotExist)
}

// archiveLayer is one layer blob inside the archive.
type archiveLayer struct {
	a         *imageArchive
	name      string
	digest    v1.Hash
	diffID    v1.Hash
	size      int64
	mediaType types.MediaType
}

func (l *archiveLayer) Digest() (v1.Hash, error) { return l.digest, nil }

// DiffID comes from the config; without it go-containerregistry would
// decompress the layer to compute one.
func (l *archiveLayer) DiffID() (v1.Hash, error)            { return l.diffID, nil }
func (l *archiveLayer) Size() (int64, error)                { return l.size, nil }
func (l *archiveLayer) MediaType() (types.MediaType, error) { return l.mediaType, nil }

func (l *archiveLayer) Compressed() (io.ReadCloser, error) {
	rc, _, err := l.a.open(l.name)
	return rc, err
}
