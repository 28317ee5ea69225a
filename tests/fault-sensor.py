#!/usr/bin/env python3
"""A deliberately broken Stenographer for Docket's tests.

A real HTTPS server (TLS with a client certificate required, like Stenographer) that answers
POST /query in one chosen faulty way, for the faults a real Stenographer cannot be made to
show on demand. It streams a real classic pcap file with chunked encoding, as Stenographer
does. Modes:

  ok       the whole file, then a clean end
  status   400 text/plain "could not parse query" (Stenographer's own refusal)
  html     200 with an HTML "502 Bad Gateway" page (a proxy in the way)
  stall    the header and RECORDS whole records, then silence with the connection open
  silent   reads the request and never answers
  die      the header, RECORDS records and half of the next one, then the connection drops
  corrupt  the header, RECORDS records, then a record claiming 2 GiB, then a clean end

GET /debug/stats answers a few Stenographer-like counters. Prints "PORT <n>" once listening.
"""

import argparse
import socket
import ssl
import struct
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def records(data):
    """Offsets of the whole records of a classic pcap (after its 24-byte header)."""
    little = data[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1")
    fmt = "<I" if little else ">I"
    off, out = 24, []
    while off + 16 <= len(data):
        incl = struct.unpack(fmt, data[off + 8 : off + 12])[0]
        if off + 16 + incl > len(data):
            break
        out.append((off, off + 16 + incl))
        off += 16 + incl
    return out


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def chunk(self, b):
        self.wfile.write(b"%x\r\n" % len(b) + b + b"\r\n")
        self.wfile.flush()

    def do_GET(self):
        if self.path != "/debug/stats":
            self.send_error(404)
            return
        body = b"oldest_timestamp\t0\nhttp_request_query_POST_completed\t0\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        self.rfile.read(n)
        mode, data, recs, k = ARGS.mode, DATA, RECORDS, ARGS.records
        if mode == "silent":
            time.sleep(3600)
            return
        if mode == "status":
            body = b"could not parse query\n"
            self.send_response(400)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        self.send_response(200)
        if mode == "html":
            self.send_header("Content-Type", "text/html")
        else:
            self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        if mode == "html":
            self.chunk(b"<html><head><title>502 Bad Gateway</title></head>"
                       b"<body><h1>502 Bad Gateway</h1></body></html>\n")
            self.wfile.write(b"0\r\n\r\n")
            return
        if mode == "ok":
            end = len(data)
        else:
            end = recs[k - 1][1] if k > 0 else 24
        # The header and the whole records, in a few chunks.
        for i in range(0, end, 65536):
            self.chunk(data[i : min(end, i + 65536)])
        if mode == "ok":
            self.wfile.write(b"0\r\n\r\n")
        elif mode == "stall":
            time.sleep(3600)
        elif mode == "die":
            start, stop = recs[k]
            self.chunk(data[start : start + (stop - start) // 2])
            # An abrupt end: no terminating chunk, the TCP connection just goes.
            self.connection.shutdown(socket.SHUT_RDWR)
            self.connection.close()
        elif mode == "corrupt":
            head = bytearray(data[recs[k][0] : recs[k][0] + 16])
            little = data[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1")
            fmt = "<I" if little else ">I"
            head[8:12] = struct.pack(fmt, 0x7FFFFFFF)
            self.chunk(bytes(head) + data[recs[k][0] + 16 : recs[k][1]])
            self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


def main():
    global ARGS, DATA, RECORDS
    p = argparse.ArgumentParser()
    p.add_argument("--mode", required=True,
                   choices=["ok", "status", "html", "stall", "silent", "die", "corrupt"])
    p.add_argument("--pcap", required=True)
    p.add_argument("--records", type=int, default=0)
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--ca", required=True)
    p.add_argument("--port", type=int, default=0)
    ARGS = p.parse_args()
    with open(ARGS.pcap, "rb") as f:
        DATA = f.read()
    RECORDS = records(DATA)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(ARGS.cert, ARGS.key)
    ctx.load_verify_locations(ARGS.ca)
    ctx.verify_mode = ssl.CERT_REQUIRED
    ThreadingHTTPServer.allow_reuse_address = True
    server = ThreadingHTTPServer(("127.0.0.1", ARGS.port), Handler)
    server.daemon_threads = True
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    print("PORT %d" % server.server_address[1], flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())
