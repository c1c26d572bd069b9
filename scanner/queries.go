package scanner

import "github.com/portcullis/portcullis/scanner/vulndb"

// Queries turns the inventory into vulnerability queries, one per package in
// package order, so Finding.Query indexes Packages.
func (inv *Inventory) Queries() []vulndb.Query {
	qs := make([]vulndb.Query, len(inv.Packages))
	for i, pkg := range inv.Packages {
		qs[i] = vulndb.Query{Ecosystem: pkg.Ecosystem, Name: pkg.Name, Version: pkg.Version,
			SourceName: pkg.SourceName, SourceVersion: pkg.SourceVersion, PURL: pkg.PURL}
	}
	return qs
}
