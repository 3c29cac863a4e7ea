//! Small Python programs the namespace tests run inside containers and the
//! outside namespace (servers that record their peers, clients that report
//! what they got as JSON).

/// A TCP server: accepts connections, appends the peer address to argv[3],
/// then echoes lines back.
pub const TCP_SERVER: &str = r#"
import socket, sys, threading
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(64)
print("READY", flush=True)
def handle(c, a):
    with open(sys.argv[3], "a") as f:
        f.write(a[0] + "\n")
    f = c.makefile("rwb")
    try:
        for line in f:
            f.write(line)
            f.flush()
    except Exception:
        pass
    c.close()
while True:
    c, a = s.accept()
    threading.Thread(target=handle, args=(c, a), daemon=True).start()
"#;

/// A UDP server: appends the peer address to argv[3] and echoes datagrams.
pub const UDP_SERVER: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], int(sys.argv[2])))
print("READY", flush=True)
while True:
    d, a = s.recvfrom(65535)
    with open(sys.argv[3], "a") as f:
        f.write(a[0] + "\n")
    s.sendto(d, a)
"#;

/// TCP client: connect, send a line, expect it back. Exit 0 on success.
pub const TCP_CLIENT: &str = r#"
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3]))
s.settimeout(float(sys.argv[3]))
s.sendall(b"hello dataplane\n")
buf = b""
while not buf.endswith(b"\n"):
    d = s.recv(4096)
    if not d:
        break
    buf += d
print(buf.decode().strip())
sys.exit(0 if buf == b"hello dataplane\n" else 1)
"#;

/// UDP client: send a datagram, expect it back (3 tries). Exit 0 on success.
pub const UDP_CLIENT: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(float(sys.argv[3]) / 3)
for i in range(3):
    s.sendto(b"hello udp", (sys.argv[1], int(sys.argv[2])))
    try:
        d, a = s.recvfrom(65535)
    except socket.timeout:
        continue
    if d == b"hello udp":
        print(a[0])
        sys.exit(0)
sys.exit(1)
"#;

/// A long-running TCP client: sends a numbered line every 100 ms for
/// argv[3] seconds, counts the echoes and writes a JSON report to argv[4].
pub const TCP_STREAM_CLIENT: &str = r#"
import json, socket, sys, time
res = {"sent": 0, "received": 0, "error": None, "stall": 0.0, "max_rtt": 0.0}
try:
    s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
    s.settimeout(5)
    f = s.makefile("rwb")
    print("CONNECTED", flush=True)
    end = time.time() + float(sys.argv[3])
    while time.time() < end:
        t0 = time.time()
        msg = b"%d\n" % res["sent"]
        f.write(msg)
        f.flush()
        res["sent"] += 1
        line = f.readline()
        if line != msg:
            res["error"] = "bad echo %r for %r" % (line, msg)
            break
        res["received"] += 1
        rtt = time.time() - t0
        res["max_rtt"] = max(res["max_rtt"], rtt)
        if rtt > 0.05:
            res["stall"] += rtt
        time.sleep(0.1)
    s.close()
except Exception as e:
    res["error"] = repr(e)
with open(sys.argv[4], "w") as out:
    json.dump(res, out)
"#;
