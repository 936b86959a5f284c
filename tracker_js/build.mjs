// Build footfall.js with esbuild.
//   node build.mjs          build dist/footfall.js (readable) and dist/footfall.min.js, print sizes
//   node build.mjs --check  rebuild into a temp dir; fail if dist/ differs or the gzip budget is exceeded
//   node build.mjs --cost   print the gzip bytes each feature costs (build without it, compare)
import { build } from 'esbuild'
import { gzipSync } from 'node:zlib'
import { readFileSync, writeFileSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, dirname } from 'node:path'
import { fileURLToPath } from 'node:url'

const here = dirname(fileURLToPath(import.meta.url))
const { version } = JSON.parse(readFileSync(join(here, 'package.json'), 'utf8'))
const BUDGET = 4096 // gzip bytes of dist/footfall.min.js
const FEATURES = ['PAGES', 'CLICKS', 'SCROLL', 'HOVER', 'VIDEO', 'ENGAGEMENT', 'DATALAYER']
const FILES = ['footfall.js', 'footfall.min.js']

const gz = buf => gzipSync(buf, { level: 9 }).length

async function bundle(minify, off = []) {
  const define = { VERSION: JSON.stringify(version) }
  for (const f of FEATURES) define['F_' + f] = String(!off.includes(f))
  const r = await build({
    entryPoints: [join(here, 'src/main.js')],
    bundle: true,
    format: 'iife',
    target: 'es2020',
    minify,
    define,
    legalComments: 'none',
    charset: 'utf8',
    write: false,

  })
  return Buffer.from(r.outputFiles[0].contents)
}

async function buildInto(dir) {
  mkdirSync(dir, { recursive: true })
  const out = { 'footfall.js': await bundle(false), 'footfall.min.js': await bundle(true) }
  for (const f of FILES) writeFileSync(join(dir, f), out[f])
  return out
}

const report = out => {
  for (const f of FILES) console.log(`${f.padEnd(16)} ${String(out[f].length).padStart(6)} B raw  ${String(gz(out[f])).padStart(5)} B gzip`)
  console.log(`budget: ${gz(out['footfall.min.js'])} / ${BUDGET} B gzip (min)`)
}

const args = process.argv.slice(2)
if (args.includes('--check')) {
  const tmp = mkdtempSync(join(tmpdir(), 'footfall-'))
  let failed = false
  try {
    const out = await buildInto(tmp)
    report(out)
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
    if (gz(out['footfall.min.js']) > BUDGET) {
      console.error(`footfall.min.js is over the ${BUDGET} B gzip budget`)
      failed = true
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true })
  }
  if (failed) process.exit(1)
  console.log('check ok: dist/ is reproducible and within budget')
} else if (args.includes('--cost')) {
  const full = gz(await bundle(true))
  console.log(`all features: ${full} B gzip`)
  let core = await bundle(true, FEATURES)
  for (const f of FEATURES) console.log(`${f.toLowerCase().padEnd(12)} ${String(full - gz(await bundle(true, [f]))).padStart(5)} B gzip`)
  console.log(`core (no automatic events): ${gz(core)} B gzip`)
} else {
  report(await buildInto(join(here, 'dist')))
}
