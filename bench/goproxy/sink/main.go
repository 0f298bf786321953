// An upload sink: reads every byte of the request body, then answers {"bytes": N}.
//
// nginx alone cannot be a faithful sink: `return 200` answers before the body is read
// and discards the rest lazily, so a client could stop early. The upstream nginx
// streams /v2/upload here (proxy_request_buffering off) and the benchmark checks N.
package main

import (
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:8082", "address to listen on")
	flag.Parse()
	handler := func(w http.ResponseWriter, r *http.Request) {
		// Large reads, straight into a scratch buffer (io.Discard would read 8 KiB at a time).
		buffer := make([]byte, 256<<10)
		var n int64
		for {
			read, err := r.Body.Read(buffer)
			n += int64(read)
			if err == io.EOF {
				break
			}
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, "{\"bytes\":%d}", n)
	}
	listener, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	log.Fatal(http.Serve(listener, http.HandlerFunc(handler)))
}
