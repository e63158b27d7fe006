// Development aid only (STASK_BROWSER_DEV_PROXY=1): serves host/web from the source tree
// and forwards /api to the service, for working on the interface without rebuilding the
// binary. The tests never use it unless asked to.

import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';

const TYPES = { '.html': 'text/html', '.js': 'text/javascript', '.css': 'text/css', '.json': 'application/json', '.svg': 'image/svg+xml' };

export function devProxy(webRoot, target) {
  const t = new URL(target);
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, 'http://x');
    if (url.pathname.startsWith('/api/')) {
      const p = http.request({ host: t.hostname, port: t.port, path: req.url, method: req.method, headers: req.headers }, (r) => {
        res.writeHead(r.statusCode, r.headers);
        r.pipe(res);
      });
      p.on('error', () => {
        res.writeHead(502);
        res.end();
      });
      req.pipe(p);
      return;
    }
    let f = path.join(webRoot, path.normalize(url.pathname));
    if (!f.startsWith(webRoot) || !fs.existsSync(f) || fs.statSync(f).isDirectory()) {
      if (path.extname(url.pathname)) {
        res.writeHead(404);
        res.end();
        return;
      }
      f = path.join(webRoot, 'index.html');
    }
    res.writeHead(200, { 'content-type': TYPES[path.extname(f)] || 'application/octet-stream', 'cache-control': 'no-store' });
    fs.createReadStream(f).pipe(res);
  });
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => resolve({ url: `http://127.0.0.1:${server.address().port}`, close: () => server.close() }));
  });
}
