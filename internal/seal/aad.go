package seal

import (
	"encoding/binary"
)

// MaterialAAD is the associated data that binds sealed key material to what
// it is: the key ID, the version and the key spec. Each field is
// length-prefixed so no two different triples encode alike.
func MaterialAAD(keyID string, version int32, keySpec string) []byte {
	const domain = "kubekms/key-material/v1"
	b := make([]byte, 0, len(domain)+len(keyID)+len(keySpec)+16)
	for _, f := range []string{domain, keyID} {
		b = binary.BigEndian.AppendUint16(b, uint16(len(f)))
		b = append(b, f...)
	}
	b = binary.BigEndian.AppendUint32(b, uint32(version))
	b = binary.BigEndian.AppendUint16(b, uint16(len(keySpec)))
	return append(b, keySpec...)
}
