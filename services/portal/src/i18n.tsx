import { createContext, type ReactNode, useContext, useState } from "react";

/** Korean first; English switchable (kept for the session). */
export type Lang = "ko" | "en";

const ko = {
  appTitle: "Telco 관리 포털",
  language: "언어",
  signIn: "로그인",
  signOut: "로그아웃",
  username: "사용자 이름",
  password: "비밀번호",
  signedInAs: "로그인: {role}",
  customers: "고객",
  searchBy: "검색 기준",
  byPhone: "전화번호",
  byEmail: "이메일",
  byName: "이름",
  query: "검색어",
  search: "검색",
  noResults: "검색 결과가 없습니다.",
  name: "이름",
  phone: "전화번호",
  email: "이메일",
  birthDate: "생년월일",
  customer: "고객 정보",
  masked: "마스킹됨",
  revealed: "원문 표시 중 (감사 기록됨)",
  reveal: "개인정보 보기",
  revealReason: "조회 사유",
  revealNotAllowed: "이 역할은 개인정보를 볼 수 없습니다.",
  lines: "회선",
  line: "회선",
  plan: "요금제",
  status: "상태",
  quota: "월 제공량",
  usage: "이번 달 사용량",
  usageOf: "{used} / {quota} 사용 ({percent}%)",
  unlimited: "무제한",
  alertsSent: "발송된 알림",
  none: "없음",
  live: "실시간",
  reconnecting: "다시 연결하는 중…",
  open: "열기",
  back: "뒤로",
  month: "월",
  loading: "불러오는 중…",
  role_admin: "관리자",
  role_operator: "상담원",
  role_viewer: "조회자",
  role_subscriber: "가입자",
  role_service: "서비스",
} as const;

export type Key = keyof typeof ko;

const en: Record<Key, string> = {
  appTitle: "Telco admin portal",
  language: "Language",
  signIn: "Sign in",
  signOut: "Sign out",
  username: "User name",
  password: "Password",
  signedInAs: "Signed in: {role}",
  customers: "Customers",
  searchBy: "Search by",
  byPhone: "Phone",
  byEmail: "E-mail",
  byName: "Name",
  query: "Search for",
  search: "Search",
  noResults: "No customers found.",
  name: "Name",
  phone: "Phone",
  email: "E-mail",
  birthDate: "Date of birth",
  customer: "Customer",
  masked: "masked",
  revealed: "shown in clear (audited)",
  reveal: "Reveal personal data",
  revealReason: "Reason",
  revealNotAllowed: "This role cannot reveal personal data.",
  lines: "Lines",
  line: "Line",
  plan: "Plan",
  status: "Status",
  quota: "Monthly quota",
  usage: "Usage this month",
  usageOf: "{used} of {quota} used ({percent}%)",
  unlimited: "unlimited",
  alertsSent: "Alerts sent",
  none: "none",
  live: "live",
  reconnecting: "reconnecting…",
  open: "Open",
  back: "Back",
  month: "Month",
  loading: "Loading…",
  role_admin: "administrator",
  role_operator: "operator",
  role_viewer: "viewer",
  role_subscriber: "subscriber",
  role_service: "service",
};

const DICTS: Record<Lang, Record<Key, string>> = { ko, en };

export type T = (key: Key, vars?: Record<string, string | number>) => string;

const Ctx = createContext<{ lang: Lang; setLang: (l: Lang) => void; t: T }>({
  lang: "ko",
  setLang: () => {},
  t: (k) => k,
});

export function I18nProvider({ children }: { children: ReactNode }) {
  const [lang, setLangState] = useState<Lang>(() => (sessionStorage.getItem("lang") === "en" ? "en" : "ko"));
  const setLang = (l: Lang) => {
    sessionStorage.setItem("lang", l);
    document.documentElement.lang = l;
    setLangState(l);
  };
  const t: T = (key, vars) => DICTS[lang][key].replace(/\{(\w+)\}/g, (_, v: string) => String(vars?.[v] ?? `{${v}}`));
  return <Ctx.Provider value={{ lang, setLang, t }}>{children}</Ctx.Provider>;
}

export const useI18n = () => useContext(Ctx);
