package clamdserver

import (
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
)

// EICAR is the EICAR anti-virus test file (68 bytes), assembled from parts
// so that this repository holds no file a virus scanner would flag.
func EICAR() []byte {
	parts := []string{`X5O!P%@AP[4\PZX54(P^)7CC)7}$`, "EICAR-STANDARD-", "ANTIVIRUS-TEST-", "FILE!$H+H*"}
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

// Names of the test signatures HashSignatures, BodySignatures and EICARHashLines write.
const (
	HashSignatureName = "Portcullis.Test.EICAR-HSB"
	MD5SignatureName  = "Portcullis.Test.EICAR-HDB"
	BodySignatureName = "Portcullis.Test.EICAR-Body"
)

// HashSignatures is a database matching the exact EICAR file by a sha256
// hash signature (.hsb). clamd reports signatures of a database it did not
// get from ClamAV with ".UNOFFICIAL" appended to the name.
func HashSignatures() map[string]string {
	e := EICAR()
	return map[string]string{"portcullis-test.hsb": fmt.Sprintf("%x:%d:%s\n", sha256.Sum256(e), len(e), HashSignatureName)}
}

// BodySignatures is a database matching EICAR's middle by a body signature
// (.ndb): it finds EICAR inside a larger file too, whose hash differs.
func BodySignatures() map[string]string {
	e := EICAR()
	return map[string]string{"portcullis-test.ndb": fmt.Sprintf("%s:0:*:%s\n", BodySignatureName, hex.EncodeToString(e[28:62]))}
}

// EICARHashLines are the .hsb and .hdb lines for EICAR, for a signature
// import.
func EICARHashLines() (hsb, hdb string) {
	e := EICAR()
	return fmt.Sprintf("%x:%d:%s\n", sha256.Sum256(e), len(e), HashSignatureName),
		fmt.Sprintf("%x:%d:%s\n", md5.Sum(e), len(e), MD5SignatureName)
}
