#!/usr/bin/env node
// End-to-end test of a Strata broker with KafkaJS.
//
// Usage: node tests/e2e/kafkajs_client.js --bootstrap 127.0.0.1:PORT
//
// Exits 0 and prints "OK kafkajs_client: <n> checks" on success; prints
// "FAIL kafkajs_client: ..." and exits non-zero on the first failure.
//
// KafkaJS is loaded from ${STRATA_NODE_DIR:-$HOME/.cache/strata-node}
// (installed there by scripts/setup.sh).
//
// NOTE: KafkaJS has no consumer that works without a consumer group (its
// Consumer always joins a group via FindCoordinator/JoinGroup/SyncGroup), and
// the broker has no group coordination yet. So instead of consuming the
// messages back, this script checks what the broker stored through the admin
// API: each produce response's baseOffset must match the offsets expected from
// KafkaJS's own (deterministic, murmur2-keyed) partitioner, and
// admin.fetchTopicOffsets must report a high watermark per partition equal to
// the number of messages produced to it (and a low watermark of 0).
'use strict'

const os = require('os')
const path = require('path')
const crypto = require('crypto')

const NAME = 'kafkajs_client'
const nodeDir = process.env.STRATA_NODE_DIR || path.join(os.homedir(), '.cache', 'strata-node')
let kafkajs
try {
  kafkajs = require(path.join(nodeDir, 'node_modules', 'kafkajs'))
} catch (e) {
  console.log(`FAIL ${NAME}: cannot load kafkajs from ${nodeDir} (run scripts/setup.sh): ${e.message}`)
  process.exit(2)
}
const { Kafka, logLevel, ConfigResourceTypes, Partitioners } = kafkajs
const kafkajsVersion = require(path.join(nodeDir, 'node_modules', 'kafkajs', 'package.json')).version

class Failure extends Error {}

let checks = 0
const suffix = crypto.randomBytes(5).toString('hex')
const topicName = label => `e2e-kjs-${label}-${suffix}`
const log = msg => console.log(`[${NAME} ${new Date().toISOString().slice(11, 19)}] ${msg}`)
const sleep = ms => new Promise(resolve => setTimeout(resolve, ms))

function check (cond, msg) {
  if (!cond) throw new Failure(msg)
  checks++
}

function checkEq (actual, expected, what) {
  const a = JSON.stringify(actual)
  const e = JSON.stringify(expected)
  check(a === e, `${what}: expected ${e}, got ${a}`)
}

function parseArgs (argv) {
  const args = { bootstrap: null, messages: 5000, timeout: 600 }
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    const next = () => {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`)
      return argv[++i]
    }
    if (a === '--bootstrap') args.bootstrap = next()
    else if (a.startsWith('--bootstrap=')) args.bootstrap = a.slice('--bootstrap='.length)
    else if (a === '--messages') args.messages = parseInt(next(), 10)
    else if (a === '--timeout') args.timeout = parseFloat(next())
    else if (a === '-h' || a === '--help') {
      console.log('usage: node kafkajs_client.js --bootstrap HOST:PORT [--messages N] [--timeout S]')
      process.exit(0)
    } else throw new Error(`unknown argument ${a}`)
  }
  if (!args.bootstrap) throw new Error('--bootstrap HOST:PORT is required')
  return args
}

async function describeTopic (admin, topic) {
  const res = await admin.describeConfigs({
    resources: [{ type: ConfigResourceTypes.TOPIC, name: topic }],
    includeSynonyms: false
  })
  check(res.resources.length === 1, `describeConfigs(${topic}) returned ${res.resources.length} resources`)
  const r = res.resources[0]
  checkEq(r.errorCode, 0, `describeConfigs(${topic}) errorCode (${r.errorMessage})`)
  const out = {}
  for (const e of r.configEntries) out[e.configName] = e
  return out
}

async function waitGone (admin, topics, timeoutMs) {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const listed = new Set(await admin.listTopics())
    const still = topics.filter(t => listed.has(t))
    if (still.length === 0) return
    if (Date.now() > deadline) throw new Failure(`topics still listed after deleteTopics: ${still}`)
    await sleep(200)
  }
}

async function testAdmin (admin) {
  const tPlain = topicName('admin')
  const tCustom = topicName('custom')
  const created = await admin.createTopics({
    topics: [
      { topic: tPlain, numPartitions: 3, replicationFactor: 1 },
      {
        topic: tCustom,
        numPartitions: 2,
        replicationFactor: 1,
        configEntries: [{ name: 'retention.ms', value: '123456' }]
      }
    ],
    waitForLeaders: true,
    timeout: 30000
  })
  check(created === true, `createTopics returned ${created}, expected true`)

  // Creating an existing topic: KafkaJS returns false (TOPIC_ALREADY_EXISTS),
  // after logging an ERROR line "Response CreateTopics ... Topic creation errors".
  log('re-creating an existing topic (expect one KafkaJS ERROR log line)')
  const again = await admin.createTopics({
    topics: [{ topic: tPlain, numPartitions: 3, replicationFactor: 1 }],
    waitForLeaders: false
  })
  check(again === false, `re-creating ${tPlain} returned ${again}, expected false`)

  const md = await admin.fetchTopicMetadata({ topics: [tPlain, tCustom] })
  const byName = Object.fromEntries(md.topics.map(t => [t.name, t]))
  checkEq(byName[tPlain] && byName[tPlain].partitions.length, 3, `${tPlain} partition count`)
  checkEq(byName[tCustom] && byName[tCustom].partitions.length, 2, `${tCustom} partition count`)
  for (const p of byName[tPlain].partitions) {
    check(p.leader >= 0, `${tPlain}[${p.partitionId}] has no leader: ${JSON.stringify(p)}`)
  }
  const listed = await admin.listTopics()
  check(listed.includes(tPlain) && listed.includes(tCustom), 'listTopics includes created topics')
  log(`created ${tPlain}, ${tCustom}`)

  let cfg = await describeTopic(admin, tPlain)
  checkEq(cfg['retention.ms'] && cfg['retention.ms'].configValue, '604800000', `${tPlain} retention.ms`)
  checkEq(cfg['cleanup.policy'] && cfg['cleanup.policy'].configValue, 'delete', `${tPlain} cleanup.policy`)
  cfg = await describeTopic(admin, tCustom)
  checkEq(cfg['retention.ms'] && cfg['retention.ms'].configValue, '123456', `${tCustom} retention.ms`)
  checkEq(cfg['retention.ms'].isDefault, false, `${tCustom} retention.ms isDefault`)
  log('describeConfigs ok')

  await admin.deleteTopics({ topics: [tPlain, tCustom], timeout: 30000 })
  check(true, 'deleteTopics')
  await waitGone(admin, [tPlain, tCustom], 15000)
  check(true, 'deleted topics gone')
  log('deleteTopics ok')
}

async function testProduce (kafka, admin, count) {
  const topic = topicName('data')
  const partitions = 3
  const created = await admin.createTopics({
    topics: [{ topic, numPartitions: partitions, replicationFactor: 1 }],
    waitForLeaders: true,
    timeout: 30000
  })
  check(created === true, `createTopics(${topic}) returned ${created}`)
  const md = await admin.fetchTopicMetadata({ topics: [topic] })
  const partitionMetadata = md.topics[0].partitions
  checkEq(partitionMetadata.length, partitions, `${topic} partition count`)

  // Same partitioner as the producer uses; with keys it is deterministic.
  const partitioner = Partitioners.DefaultPartitioner()
  const producer = kafka.producer({
    createPartitioner: Partitioners.DefaultPartitioner,
    allowAutoTopicCreation: false,
    idempotent: false
  })
  await producer.connect()
  const nextOffset = new Array(partitions).fill(0)
  const baseTs = Date.now() - 600000
  const batchSize = 500
  const t0 = Date.now()
  try {
    for (let start = 0; start < count; start += batchSize) {
      const messages = []
      const perPartition = new Array(partitions).fill(0)
      for (let i = start; i < Math.min(count, start + batchSize); i++) {
        const msg = {
          key: `key-${i}`,
          value: `value-${i}-${'j'.repeat(i % 30)}`,
          headers: { idx: String(i), src: 'kafkajs' },
          timestamp: String(baseTs + i)
        }
        perPartition[partitioner({ topic, partitionMetadata, message: msg })]++
        messages.push(msg)
      }
      const res = await producer.send({ topic, acks: -1, timeout: 30000, messages })
      for (const r of res) {
        checkEq(r.errorCode, 0, `produce to ${r.topicName}[${r.partition}] errorCode`)
        checkEq(String(r.baseOffset), String(nextOffset[r.partition]),
          `produce batch @${start}: baseOffset of partition ${r.partition}`)
        nextOffset[r.partition] += perPartition[r.partition]
        perPartition[r.partition] = 0
      }
      check(perPartition.every(n => n === 0),
        `produce batch @${start}: no response for partitions with messages: ${perPartition}`)
    }
  } finally {
    await producer.disconnect()
  }
  log(`produced ${count} in ${Date.now() - t0} ms, per partition ${nextOffset}`)
  check(nextOffset.every(n => n > 0), `messages spread over all partitions: ${nextOffset}`)

  // No group-less consumer in KafkaJS (see the note at the top): verify the
  // watermarks instead of reading the data back.
  const offsets = await admin.fetchTopicOffsets(topic)
  checkEq(offsets.length, partitions, 'fetchTopicOffsets partition count')
  for (const o of offsets) {
    checkEq(String(o.high), String(nextOffset[o.partition]), `high watermark of partition ${o.partition}`)
    checkEq(String(o.low), '0', `low watermark of partition ${o.partition}`)
  }
  // Every partition's first message has a timestamp >= baseTs.
  const byTs = await admin.fetchTopicOffsetsByTimestamp(topic, baseTs)
  for (const o of byTs) {
    checkEq(String(o.offset), '0', `fetchTopicOffsetsByTimestamp(baseTs) partition ${o.partition}`)
  }
  log('watermarks ok')
}

async function testGroup (kafka, admin, count = 300) {
  // A group of two consumers reads every message once (KafkaJS commits as it
  // goes); the committed offsets then cover the topic.
  const topic = `strata-e2e-group-${suffix}`
  await admin.createTopics({ topics: [{ topic, numPartitions: 2, replicationFactor: 1 }], waitForLeaders: true })
  const producer = kafka.producer()
  await producer.connect()
  const messages = []
  for (let i = 0; i < count; i++) messages.push({ value: `g${i}`, partition: i % 2 })
  await producer.send({ topic, acks: -1, messages })
  await producer.disconnect()
  const groupId = `strata-e2e-group-${suffix}`
  const seen = new Set()
  const consumers = [kafka.consumer({ groupId }), kafka.consumer({ groupId })]
  for (const c of consumers) {
    await c.connect()
    await c.subscribe({ topic, fromBeginning: true })
    await c.run({ eachMessage: async ({ message }) => { seen.add(message.value.toString()) } })
  }
  const deadline = Date.now() + 120000
  let committed = 0
  while (Date.now() < deadline) {
    if (seen.size === count) {
      const offsets = await admin.fetchOffsets({ groupId, topics: [topic] })
      committed = offsets[0].partitions.reduce((n, p) => n + Math.max(0, Number(p.offset)), 0)
      if (committed === count) break
    }
    await new Promise(resolve => setTimeout(resolve, 200))
  }
  for (const c of consumers) await c.disconnect()
  checkEq(seen.size, count, 'messages consumed by the group')
  checkEq(committed, count, 'committed offsets cover the topic')
}

async function main () {
  const args = parseArgs(process.argv.slice(2))
  const watchdog = setTimeout(() => {
    console.log(`FAIL ${NAME}: watchdog: run exceeded ${args.timeout}s`)
    process.exit(3)
  }, args.timeout * 1000)
  watchdog.unref()

  log(`kafkajs ${kafkajsVersion}, node ${process.version}, bootstrap ${args.bootstrap}, suffix ${suffix}`)
  const kafka = new Kafka({
    clientId: `strata-e2e-${NAME}`,
    brokers: [args.bootstrap],
    logLevel: logLevel.ERROR,
    connectionTimeout: 5000,
    requestTimeout: 30000,
    retry: { initialRetryTime: 100, maxRetryTime: 2000, retries: 5 }
  })
  const admin = kafka.admin()
  let section = 'connect'
  try {
    await admin.connect()
    section = 'admin'
    await testAdmin(admin)
    section = 'produce'
    await testProduce(kafka, admin, args.messages)
    section = 'group'
    await testGroup(kafka, admin)
  } catch (e) {
    if (!(e instanceof Failure)) console.error(e)
    console.log(`FAIL ${NAME} [${section}]: ${e instanceof Failure ? '' : e.name + ': '}${e.message}`)
    process.exitCode = 1
  } finally {
    try { await admin.disconnect() } catch (_) {}
  }
  if (process.exitCode !== 1) console.log(`OK ${NAME}: ${checks} checks`)
  process.exit(process.exitCode || 0)
}

main().catch(e => {
  console.log(`FAIL ${NAME}: ${e.stack || e}`)
  process.exit(2)
})
