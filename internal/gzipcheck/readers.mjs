// Decompresses the gzip file on stdin to stdout with Node's zlib.gunzipSync, which reads
// every member of a multi-member file (RFC 1952 section 2.2; gzipcheck's tests check this on
// the Node installed) and checks each member's CRC-32 and ISIZE.
// Run by gzipcheck as: node --input-type=module -e "$(cat readers.mjs)"
import { gunzipSync } from 'node:zlib';

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
let out;
try {
  out = gunzipSync(Buffer.concat(chunks));
} catch (e) {
  process.stderr.write(`node zlib: ${e.code ?? e.name}: ${e.message}\n`);
  process.exitCode = 1;
}
// No process.exit: a pipe write may still be pending, and Node exits once it is done.
if (out !== undefined) process.stdout.write(out);
