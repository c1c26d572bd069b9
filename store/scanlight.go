package store

import "context"

// InventorySkipper is the capability of a ScanStore to read a record
// without its inventory: ScanWithoutInventory is Scan (match marks
// applied) with Inventory nil. An inventory is most of a record (tens of
// kilobytes of packages); deciding a verdict, the gate and the bulk work
// that decides thousands of verdicts again after a database update never
// look at it, and building it was most of their cost and garbage.
type InventorySkipper interface {
	ScanWithoutInventory(ctx context.Context, digest string) (ScanRecord, error)
	// ScansWithoutInventory is Scans with every record's Inventory nil.
	ScansWithoutInventory(ctx context.Context, fn func(ScanRecord) bool) error
}

// ScansWithoutInventory visits every record without its inventory in s,
// cheaply where s can (InventorySkipper), else by Scans.
func ScansWithoutInventory(ctx context.Context, s ScanStore, fn func(ScanRecord) bool) error {
	if sk, ok := s.(InventorySkipper); ok {
		return sk.ScansWithoutInventory(ctx, fn)
	}
	return s.Scans(ctx, func(r ScanRecord) bool {
		r.Inventory = nil
		return fn(r)
	})
}

// ScanWithoutInventory reads the record of digest without its inventory
// from s, cheaply where s can (InventorySkipper), else by Scan.
func ScanWithoutInventory(ctx context.Context, s ScanStore, digest string) (ScanRecord, error) {
	if sk, ok := s.(InventorySkipper); ok {
		return sk.ScanWithoutInventory(ctx, digest)
	}
	r, err := s.Scan(ctx, digest)
	r.Inventory = nil
	return r, err
}

// recordWithoutInventory decodes a stored scan record into ScanRecord
// but its inventory into nothing: the decoder steps over that value
// (its JSON is still checked) without building a package list.
type recordWithoutInventory struct {
	*ScanRecord
	// A field of the outer struct wins over the embedded one of the same
	// name.
	Inventory skippedJSON `json:"inventory,omitempty"`
}

// skippedJSON takes any JSON value and keeps nothing of it.
type skippedJSON struct{}

func (*skippedJSON) UnmarshalJSON([]byte) error { return nil }
