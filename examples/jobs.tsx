"use client";
import { useMutation, usePaginatedQuery, useQuery } from "convex/react";
import type { FunctionReturnType } from "convex/server";
import { useState } from "react";
import { api } from "../convex/_generated/api";
import type { Id } from "../convex/_generated/dataModel";
import { ErrorMessage } from "./errors";

type Job = NonNullable<FunctionReturnType<typeof api.jobs.getJob>>;

/**
 * Creates a job, with an optional input image uploaded to Convex storage first:
 * generateImageUploadUrl → POST the file → createJob({ imageStorageId }). The idempotency key is
 * made once per submission, so retrying after a network error never charges twice.
 */
export function useCreateJob() {
  const generateUploadUrl = useMutation(api.jobs.generateImageUploadUrl);
  const createJob = useMutation(api.jobs.createJob);
  return async (input: {
    prompt: string;
    durationSec: 5 | 10 | 15;
    image?: File;
    idempotencyKey: string;
  }): Promise<Id<"jobs">> => {
    let imageStorageId: Id<"_storage"> | undefined;
    if (input.image) {
      const uploadUrl = await generateUploadUrl({});
      const response = await fetch(uploadUrl, {
        method: "POST",
        // PNG, JPEG or WebP up to 10 MiB: this header and the file's first bytes must agree.
        // The URL works once (401 after that, or after an hour: ask for a new one).
        headers: { "Content-Type": input.image.type },
        body: input.image,
      });
      if (!response.ok) throw new Error(`Upload failed (${response.status}).`);
      ({ storageId: imageStorageId } = (await response.json()) as { storageId: Id<"_storage"> });
    }
    return await createJob({
      prompt: input.prompt,
      durationSec: input.durationSec,
      imageStorageId,
      idempotencyKey: input.idempotencyKey,
    });
  };
}

export function NewJobForm({ onCreated }: { onCreated: (jobId: Id<"jobs">) => void }) {
  const createJob = useCreateJob();
  const [prompt, setPrompt] = useState("");
  const [image, setImage] = useState<File | undefined>();
  const [error, setError] = useState<unknown>(null);
  const [key, setKey] = useState(() => crypto.randomUUID());
  return (
    <form
      onSubmit={async (event) => {
        event.preventDefault();
        setError(null);
        try {
          onCreated(await createJob({ prompt, durationSec: 5, image, idempotencyKey: key }));
          setKey(crypto.randomUUID()); // the next submission is a new job
        } catch (caught) {
          setError(caught); // e.g. INSUFFICIENT_CREDITS; resubmitting reuses the key
        }
      }}
    >
      <textarea value={prompt} onChange={(e) => setPrompt(e.target.value)} maxLength={2000} />
      <input
        type="file"
        accept="image/png,image/jpeg,image/webp"
        onChange={(e) => setImage(e.target.files?.[0])}
      />
      <button type="submit">Generate (5 credits)</button>
      <ErrorMessage error={error} />
    </form>
  );
}

/** One job, live: status, queue position, progress, the video while it lasts. */
export function JobStatus({ jobId }: { jobId: Id<"jobs"> }) {
  const job = useQuery(api.jobs.getJob, { jobId });
  const cancelJob = useMutation(api.jobs.cancelJob);
  if (job === undefined) return <p>Loading…</p>;
  if (job === null) return <p>No such job.</p>; // not yours, or it does not exist
  return (
    <div>
      <JobLine job={job} />
      {job.status === "queued" && (
        // Only a queued job can be canceled; its credits come back at once.
        <button onClick={() => void cancelJob({ jobId })}>Cancel</button>
      )}
      {job.status === "done" && job.r2Url && <video src={job.r2Url} controls />}
    </div>
  );
}

function JobLine({ job }: { job: Job }) {
  switch (job.status) {
    case "queued":
      return job.queuePosition ? (
        <p>
          Queued: {job.queuePosition.atLeast ? "over 100" : job.queuePosition.position - 1} ahead
          {job.attempt ? " (retrying)" : ""}
        </p>
      ) : (
        <p>Queued</p>
      );
    case "running":
      return <p>Rendering… {job.progress ?? 0}%</p>;
    case "done":
      return <p>Done: available until {new Date(job.expiresAt!).toLocaleString()}</p>;
    case "failed":
      return <p>Failed, credits refunded: {job.error}</p>;
    case "canceled":
      return <p>Canceled, credits refunded</p>;
    case "expired":
      return <p>Expired: the video is gone</p>;
  }
}

/** The caller's jobs, newest first, 20 at a time (`listJobs` takes `paginationOpts`). */
export function JobList() {
  const { results, status, loadMore } = usePaginatedQuery(
    api.jobs.listJobs,
    {},
    { initialNumItems: 20 },
  );
  return (
    <ul>
      {results.map((job) => (
        <li key={job._id}>
          {job.prompt.slice(0, 60)} <JobLine job={job} />
        </li>
      ))}
      {status === "CanLoadMore" && <button onClick={() => loadMore(20)}>More</button>}
    </ul>
  );
}
