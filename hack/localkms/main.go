// Command localkms runs local-kms (github.com/nsmithuk/local-kms, an AWS
// KMS API emulator) for `make bench`, as a point of comparison. Upstream's
// main listens on every interface; this one serves the same handler on the
// address it is given (127.0.0.1 in the bench), with its data in a
// directory of its own. It is its own Go module so that local-kms's
// dependencies never enter kubekms's go.mod.
package main

import (
	"flag"
	"log"
	"net"
	"net/http"
	"path/filepath"

	"github.com/nsmithuk/local-kms/src"
	"github.com/nsmithuk/local-kms/src/config"
	"github.com/nsmithuk/local-kms/src/data"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "Address to serve on.")
	dir := flag.String("data", "", "Directory for local-kms's database (required).")
	flag.Parse()
	if *dir == "" {
		log.Fatal("-data is required")
	}
	config.AWSAccountId, config.AWSRegion = "111122223333", "eu-west-2"
	config.DatabasePath, _ = filepath.Abs(*dir)
	db := data.NewDatabase(config.DatabasePath)
	defer db.Close()
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("local-kms serving on %s", ln.Addr())
	log.Fatal(http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		src.HandleRequest(w, r, db)
	})))
}
