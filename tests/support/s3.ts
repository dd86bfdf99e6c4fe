/**
 * A real S3-compatible server (s3rver) for the media tests: listens on 127.0.0.1 on a free port,
 * keeps its files in a fresh temporary folder, and is closed (folder removed) by `close`. Start
 * it in a test file's beforeAll and close it in afterAll.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { AwsClient } from "aws4fetch";
import S3rver from "s3rver";

export const TEST_BUCKET = "cineweave-videos";

export type S3Server = {
  endpoint: string;
  /** The R2_* variables pointing the backend at this server. */
  env: Record<string, string>;
  /** A new empty bucket (tests share the server; job ids repeat across test deployments). */
  createBucket(name: string): Promise<void>;
  close(): Promise<void>;
};

export async function startS3(): Promise<S3Server> {
  const directory = mkdtempSync(path.join(tmpdir(), "cineweave-s3-"));
  const server = new S3rver({
    address: "127.0.0.1",
    port: 0,
    silent: true,
    directory,
    configureBuckets: [{ name: TEST_BUCKET, configs: [] }],
  });
  const { port } = (await server.run()) as { port: number };
  const endpoint = `http://127.0.0.1:${port}`;
  return {
    endpoint,
    env: {
      R2_ENDPOINT: endpoint,
      R2_ACCESS_KEY_ID: "S3RVER",
      R2_SECRET_ACCESS_KEY: "S3RVER",
      R2_BUCKET: TEST_BUCKET,
    },
    async createBucket(name) {
      const client = new AwsClient({
        accessKeyId: "S3RVER",
        secretAccessKey: "S3RVER",
        service: "s3",
        region: "auto",
        retries: 0,
      });
      const response = await client.fetch(`${endpoint}/${name}`, { method: "PUT" });
      if (response.status !== 200) {
        throw new Error(`creating bucket ${name}: ${response.status} ${await response.text()}`);
      }
    },
    async close() {
      await server.close();
      rmSync(directory, { recursive: true, force: true });
    },
  };
}
