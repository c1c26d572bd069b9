package scanner

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
)

// A read-only reader for one table of an SQLite database held in memory,
// just enough for rpm's rpmdb.sqlite: find the table in the schema, walk its
// b-tree and return one column of every row. The file format is specified
// at https://www.sqlite.org/fileformat2.html; section numbers below refer to
// it. Changes still in a -wal file are not seen (images ship checkpointed
// databases).

const sqliteMagic = "SQLite format 3\x00"

// sqliteMaxDepth bounds b-tree recursion; real trees are a few levels deep.
const sqliteMaxDepth = 32

type sqliteDB struct {
	data     []byte
	pageSize int
	usable   int // page size minus the reserved bytes at the end of each page
	pages    int
	// budget is how many payload bytes may still be assembled. A sound file
	// uses each page for one purpose, so all payloads together fit in it;
	// a hostile one that points many cells at the same overflow chain runs
	// out instead of making us copy it again and again.
	budget int
}

func openSQLite(data []byte) (*sqliteDB, error) {
	if len(data) < 100 || string(data[:16]) != sqliteMagic {
		return nil, errors.New("sqlite: not a database")
	}
	// 1.3.2: page size, 1 meaning 65536.
	pageSize := int(binary.BigEndian.Uint16(data[16:18]))
	if pageSize == 1 {
		pageSize = 65536
	}
	if pageSize < 512 || pageSize&(pageSize-1) != 0 {
		return nil, fmt.Errorf("sqlite: bad page size %d", pageSize)
	}
	usable := pageSize - int(data[20])
	if usable < 480 {
		return nil, fmt.Errorf("sqlite: usable page size %d too small", usable)
	}
	return &sqliteDB{data: data, pageSize: pageSize, usable: usable, pages: len(data) / pageSize, budget: 2 * len(data)}, nil
}

// sqliteTableBlobs returns the values of column in every row of table.
func sqliteTableBlobs(ctx context.Context, data []byte, table, column string) ([][]byte, error) {
	db, err := openSQLite(data)
	if err != nil {
		return nil, err
	}
	root, col := 0, -1
	// 2.6: the schema table is rooted at page 1: type, name, tbl_name, rootpage, sql.
	err = db.walkTable(ctx, 1, 0, map[int]bool{}, func(rec []byte) error {
		typ, _ := recordColumn(rec, 0)
		name, _ := recordColumn(rec, 1)
		if string(typ.text) != "table" || string(name.text) != table {
			return nil
		}
		rp, err := recordColumn(rec, 3)
		if err != nil {
			return err
		}
		sql, err := recordColumn(rec, 4)
		if err != nil {
			return err
		}
		root, col = int(rp.integer), columnIndex(string(sql.text), column)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("sqlite schema: %w", err)
	}
	if root == 0 || col < 0 {
		return nil, fmt.Errorf("sqlite: no table %s with column %s", table, column)
	}
	var out [][]byte
	err = db.walkTable(ctx, root, 0, map[int]bool{}, func(rec []byte) error {
		v, err := recordColumn(rec, col)
		if err != nil {
			return err
		}
		if v.blob != nil {
			out = append(out, v.blob)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("sqlite table %s: %w", table, err)
	}
	return out, nil
}

// columnIndex finds column in a CREATE TABLE statement. rpm's schema has
// no nested parentheses or quoted commas, which keeps this simple.
func columnIndex(createSQL, column string) int {
	open, end := strings.IndexByte(createSQL, '('), strings.LastIndexByte(createSQL, ')')
	if open < 0 || end < open {
		return -1
	}
	for i, def := range strings.Split(createSQL[open+1:end], ",") {
		fields := strings.Fields(def)
		if len(fields) > 0 && strings.Trim(fields[0], "'\"`[]") == column {
			return i
		}
	}
	return -1
}

func (db *sqliteDB) page(n int) ([]byte, error) {
	if n < 1 || n > db.pages {
		return nil, fmt.Errorf("page %d out of range (%d pages)", n, db.pages)
	}
	return db.data[(n-1)*db.pageSize : n*db.pageSize], nil
}

// walkTable calls fn with the record of every row of the table b-tree
// rooted at page n (1.6). Each page is visited once: a page reachable twice
// (a cycle, or a shared child) is corruption, and would otherwise make the
// walk exponential.
func (db *sqliteDB) walkTable(ctx context.Context, n, depth int, visited map[int]bool, fn func(rec []byte) error) error {
	if depth > sqliteMaxDepth {
		return errors.New("b-tree too deep")
	}
	if visited[n] {
		return fmt.Errorf("page %d reached twice", n)
	}
	visited[n] = true
	if err := ctx.Err(); err != nil {
		return err
	}
	page, err := db.page(n)
	if err != nil {
		return err
	}
	h := 0
	if n == 1 {
		h = 100 // the database header comes first on page 1
	}
	if len(page) < h+12 {
		return fmt.Errorf("page %d too short", n)
	}
	kind := page[h]
	cells := int(binary.BigEndian.Uint16(page[h+3 : h+5]))
	ptrs := h + 8
	if kind == 0x05 {
		ptrs = h + 12
	}
	if ptrs+2*cells > db.usable {
		return fmt.Errorf("page %d: %d cells do not fit", n, cells)
	}
	for i := range cells {
		off := int(binary.BigEndian.Uint16(page[ptrs+2*i:]))
		if off >= db.usable {
			return fmt.Errorf("page %d: cell %d at %d", n, i, off)
		}
		switch kind {
		case 0x0d: // table leaf: payload size, rowid, payload
			size, k := varint(page[off:db.usable])
			if k == 0 {
				return fmt.Errorf("page %d: cell %d: bad size", n, i)
			}
			_, k2 := varint(page[off+k : db.usable])
			if k2 == 0 {
				return fmt.Errorf("page %d: cell %d: bad rowid", n, i)
			}
			rec, err := db.payload(page, off+k+k2, size)
			if err != nil {
				return fmt.Errorf("page %d: cell %d: %w", n, i, err)
			}
			if err := fn(rec); err != nil {
				return err
			}
		case 0x05: // table interior: left child page, key
			if off+4 > db.usable {
				return fmt.Errorf("page %d: cell %d at %d", n, i, off)
			}
			child := int(binary.BigEndian.Uint32(page[off:]))
			if err := db.walkTable(ctx, child, depth+1, visited, fn); err != nil {
				return err
			}
		default:
			return fmt.Errorf("page %d: not a table b-tree page (type %#x)", n, kind)
		}
	}
	if kind == 0x05 {
		right := int(binary.BigEndian.Uint32(page[h+8 : h+12]))
		return db.walkTable(ctx, right, depth+1, visited, fn)
	}
	return nil
}

// payload returns a cell's payload of size bytes starting at off in page,
// following overflow pages when it does not fit (1.6, "cell payload").
func (db *sqliteDB) payload(page []byte, off int, size uint64) ([]byte, error) {
	if size > uint64(db.budget) {
		return nil, fmt.Errorf("payload of %d bytes exceeds what the file can hold", size)
	}
	p := int(size)
	db.budget -= p
	u := db.usable
	x := u - 35
	local := p
	if p > x {
		m := ((u-12)*32/255 - 23)
		k := m + (p-m)%(u-4)
		local = m
		if k <= x {
			local = k
		}
	}
	if off+local > u || (local < p && off+local+4 > u) {
		return nil, errors.New("payload overflows its page")
	}
	if local == p {
		return page[off : off+p], nil
	}
	out := make([]byte, 0, p)
	out = append(out, page[off:off+local]...)
	next := int(binary.BigEndian.Uint32(page[off+local:]))
	for hops := 0; len(out) < p; hops++ {
		if hops > db.pages {
			return nil, errors.New("overflow chain loops")
		}
		ov, err := db.page(next)
		if err != nil {
			return nil, fmt.Errorf("overflow: %w", err)
		}
		n := min(p-len(out), u-4)
		out = append(out, ov[4:4+n]...)
		next = int(binary.BigEndian.Uint32(ov[:4]))
	}
	return out, nil
}

// sqliteValue is one decoded column.
type sqliteValue struct {
	integer int64
	text    []byte
	blob    []byte
}

// recordColumn decodes column i of a record (2.1): a header of serial types
// followed by the values.
func recordColumn(rec []byte, i int) (sqliteValue, error) {
	hlen, k := varint(rec)
	if k == 0 || hlen > uint64(len(rec)) || hlen < uint64(k) {
		return sqliteValue{}, errors.New("bad record header")
	}
	pos, body := k, int(hlen)
	for col := 0; pos < int(hlen); col++ {
		st, k := varint(rec[pos:hlen])
		if k == 0 {
			return sqliteValue{}, errors.New("bad serial type")
		}
		pos += k
		size := serialSize(st)
		if size < 0 || body+size > len(rec) {
			return sqliteValue{}, errors.New("bad record value")
		}
		if col == i {
			v := rec[body : body+size]
			switch {
			case st >= 1 && st <= 6:
				var n int64
				for _, b := range v {
					n = n<<8 | int64(b)
				}
				// Sign-extend from the stored width.
				shift := 64 - 8*uint(len(v))
				return sqliteValue{integer: n << shift >> shift}, nil
			case st == 8:
				return sqliteValue{integer: 0}, nil
			case st == 9:
				return sqliteValue{integer: 1}, nil
			case st >= 12 && st%2 == 0:
				return sqliteValue{blob: v}, nil
			case st >= 13:
				return sqliteValue{text: v}, nil
			}
			return sqliteValue{}, nil // NULL or float
		}
		body += size
	}
	return sqliteValue{}, nil // fewer columns stored: the value is NULL
}

// serialSize is the size in bytes of a value of serial type st.
func serialSize(st uint64) int {
	switch {
	case st <= 4:
		return int(st) // NULL 0, then 1, 2, 3 and 4-byte integers
	case st == 5:
		return 6
	case st == 6, st == 7:
		return 8
	case st == 8, st == 9:
		return 0
	case st == 10, st == 11:
		return -1 // reserved
	case st > 1<<40:
		return -1
	default:
		return int((st - 12) / 2)
	}
}

// varint decodes SQLite's big-endian variable-length integer (1 to 9
// bytes); it returns 0 bytes read if b is too short.
func varint(b []byte) (uint64, int) {
	var v uint64
	for i := 0; i < 9; i++ {
		if i >= len(b) {
			return 0, 0
		}
		if i == 8 {
			return v<<8 | uint64(b[i]), 9
		}
		v = v<<7 | uint64(b[i]&0x7f)
		if b[i]&0x80 == 0 {
			return v, i + 1
		}
	}
	return 0, 0
}
