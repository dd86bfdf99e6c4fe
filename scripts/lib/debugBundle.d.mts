export function debugBundle(options?: { echo?: boolean }): Promise<{
  code: number;
  output: string;
  dir: string;
  requests: string[];
  remove: () => void;
}>;
