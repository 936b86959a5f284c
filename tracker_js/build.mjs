// Build footfall.js with esbuild.
//   node build.mjs          build dist/ (footfall.js readable, footfall.min.js and its .gz and .br),
//                           print sizes and the gzip bytes each feature costs
//   node build.mjs --check  rebuild into a temp dir; fail if dist/ differs or the gzip budget is exceeded
// esbuild bundles (and drops the code of features compiled out), terser
// minifies further, zopfli writes the .gz the collector serves: the budget is
// on that file, the bytes that cross the network. A feature's cost is the full
// build's gzip -9 size minus the size of a build without it (its F_* constant
// false, its code removed as dead).
import { build } from 'esbuild'
import { minify } from 'terser'
import { gzip as zopfliGzip } from '@gfx/zopfli'
import { gzipSync, gunzipSync, brotliCompressSync, brotliDecompressSync, constants as zlib } from 'node:zlib'
import { readFileSync, writeFileSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, dirname } from 'node:path'
import { fileURLToPath } from 'node:url'

const here = dirname(fileURLToPath(import.meta.url))
const { version } = JSON.parse(readFileSync(join(here, 'package.json'), 'utf8'))
const BUDGET = 5187 // bytes of dist/footfall.min.js.gz (issue 13 asks 4608: see ARCHITECTURE.md, Size)
const FEATURES = {
  PAGES: 'automatic page views',
  CLICKS: 'Element Clicked',
  SCROLL: 'Scroll Depth Reached',
  HOVER: 'Element Hovered',
  VIDEO: 'video / audio',
  ENGAGEMENT: 'Page Engaged',
  DATALAYER: 'dataLayer bridge',
  VIEWS: 'Element Viewed',
  FORMS: 'Form Started / Submitted / Abandoned',
  FRUSTRATION: 'Rage Click, Dead Click',
  LIFECYCLE: 'bfcache, prerender, hash routing',
  URL_SCRUB: 'sensitive URL parameters removed',
  ID_COOKIE: 'anonymousId from the ff_id cookie',
  ANSWERS: 'refusals/failures/errors in stats(), debug log',
  SEGMENTS: 'segments API',
}
const FILES = ['footfall.js', 'footfall.min.js', 'footfall.min.js.gz', 'footfall.min.js.br']

// Deterministic settings: the committed .gz/.br must be byte-identical on every machine.
const zopfli = buffer =>
  new Promise((resolve, reject) =>
    zopfliGzip(buffer, { numiterations: 15 }, (error, output) => (error ? reject(error) : resolve(Buffer.from(output)))),
  )
const brotli = buffer =>
  brotliCompressSync(buffer, {
    params: { [zlib.BROTLI_PARAM_QUALITY]: 11, [zlib.BROTLI_PARAM_SIZE_HINT]: buffer.length },
  })
const gz = buffer => gzipSync(buffer, { level: 9 }).length

const TERSER = {
  ecma: 2020,
  toplevel: true,
  compress: { passes: 3, unsafe: true, unsafe_arrows: true, unsafe_comps: true, unsafe_math: true, pure_getters: true, keep_fargs: false },
  mangle: { toplevel: true },
  format: { comments: false },
}

async function bundle(minified, off = []) {
  const define = { VERSION: JSON.stringify(version) }
  for (const f in FEATURES) define['F_' + f] = String(!off.includes(f))
  const r = await build({
    entryPoints: [join(here, 'src/main.js')],
    bundle: true,
    format: 'iife',
    target: 'es2020',
    minify: minified,
    define,
    // Property names ending in _ are internal (never on the wire, never in the API): shortened.
    mangleProps: /_$/,
    legalComments: 'none',
    charset: 'utf8',
    write: false,
  })
  const code = Buffer.from(r.outputFiles[0].contents)
  return minified ? Buffer.from((await minify(code.toString(), TERSER)).code) : code
}

async function buildInto(dir) {
  mkdirSync(dir, { recursive: true })
  const minified = await bundle(true)
  const out = {
    'footfall.js': await bundle(false),
    'footfall.min.js': minified,
    'footfall.min.js.gz': await zopfli(minified),
    'footfall.min.js.br': brotli(minified),
  }
  if (!gunzipSync(out['footfall.min.js.gz']).equals(minified) || !brotliDecompressSync(out['footfall.min.js.br']).equals(minified))
    throw new Error('a compressed file does not unpack to footfall.min.js')
  for (const f of FILES) writeFileSync(join(dir, f), out[f])
  return out
}

const report = async out => {
  for (const f of FILES.slice(0, 2)) console.log(`${f.padEnd(20)} ${String(out[f].length).padStart(6)} B raw  ${String(gz(out[f])).padStart(5)} B gzip`)
  console.log(`footfall.min.js.gz    ${String(out['footfall.min.js.gz'].length).padStart(6)} B (zopfli; served with Content-Encoding: gzip)`)
  console.log(`footfall.min.js.br    ${String(out['footfall.min.js.br'].length).padStart(6)} B (brotli)`)
  const full = gz(out['footfall.min.js'])
  console.log('feature costs (gzip bytes; overlapping helpers count with the feature removed last):')
  for (const f in FEATURES)
    console.log(`  ${f.toLowerCase().padEnd(12)} ${String(full - gz(await bundle(true, [f]))).padStart(5)}  ${FEATURES[f]}`)
  console.log(`  core (no automatic events, no optional parts): ${gz(await bundle(true, Object.keys(FEATURES)))} B gzip`)
  console.log(`budget: ${out['footfall.min.js.gz'].length} / ${BUDGET} B gzip (dist/footfall.min.js.gz)`)
}

const args = process.argv.slice(2)
if (args.includes('--check')) {
  const tmp = mkdtempSync(join(tmpdir(), 'footfall-'))
  let failed = false
  try {
    const out = await buildInto(tmp)
    await report(out)
    for (const f of FILES) {
      let committed
      try {
        committed = readFileSync(join(here, 'dist', f))
      } catch {
        committed = null
      }
      if (!committed || !committed.equals(out[f])) {
        console.error(`dist/${f} is not what the sources build to: run npm run build and commit dist/`)
        failed = true
      }
    }
    if (out['footfall.min.js.gz'].length > BUDGET) {
      console.error(`footfall.min.js.gz is over the ${BUDGET} B budget`)
      failed = true
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true })
  }
  if (failed) process.exit(1)
  console.log('check ok: dist/ is reproducible and within budget')
} else {
  await report(await buildInto(join(here, 'dist')))
}
